//! Secrets: checks that the Secrets named in `spec.kafka.auth` and `spec.kafka.schemaRegistry`
//! exist, allow this resource to use them, and hold the named keys; returns the Kafka ones' values
//! for the lag probe and a fingerprint of all of them for the pods.
//!
//! Reads only (`get` on single Secrets; never list or watch). Values stay in memory, in
//! [`Credentials`]; nothing here or downstream writes them into any object: the sidecar gets
//! them through `secretKeyRef` env vars and a Secret volume built by `build`.
//!
//! **Consent** (ARCHITECTURE.md "Security"): a Secret is used only when it names the resource
//! in its [`ALLOWED_CONSUMERS_ANNOTATION`] (comma-separated names, or `*`). Someone who may
//! create a `KafkaConsumerProxy` but not read a Secret therefore cannot make the operator, or
//! the pods it builds, send that Secret's values anywhere: the annotation can only be set by
//! someone who may edit the Secret. A Secret that does not allow it stops the reconcile before
//! its values are used or any pod refers to it.
//!
//! **Rotation**: [`Resolved::fingerprint`] is a hash of the values the pods use. `build` puts it
//! in the pod template, so a rotated password or certificate rolls the pods (the sidecar reads
//! its credentials at start), noticed at the next reconcile (every `--lag-refresh-interval`).

use k8s_openapi::api::core::v1::Secret;
use kcp_crds::v1alpha1::{KafkaAuth, SchemaRegistrySpec};
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use crate::{Error, lag::Credentials};

/// The annotation by which a Secret lets resources use it: `kafkaproxy.io/allowed-consumers:
/// orders,payments` (KafkaConsumerProxy names in the Secret's namespace) or `*` (any).
pub const ALLOWED_CONSUMERS_ANNOTATION: &str = "kafkaproxy.io/allowed-consumers";

/// The referenced Secrets' values, and a fingerprint of them.
#[derive(Debug, Default)]
pub struct Resolved {
    pub credentials: Credentials,
    /// Hex SHA-256 over every referenced Secret name, key and value; `None` without Secrets.
    pub fingerprint: Option<String>,
}

/// Reads the referenced Secrets. Missing Secret or key, or a Secret that does not allow
/// `resource`: an error the user (or the Secret's owner) must fix. The schema registry's
/// Secrets are checked the same way and count in the fingerprint (a rotated registry password
/// rolls the pods); their values go nowhere else.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    resource: &str,
    auth: Option<&KafkaAuth>,
    registry: Option<&SchemaRegistrySpec>,
) -> Result<Resolved, Error> {
    let mut creds = Credentials::default();
    let mut used: Vec<(String, String, String)> = Vec::new();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(r) = registry {
        let mut refs: Vec<(&str, &str)> = Vec::new();
        if let Some(b) = &r.basic_auth {
            refs.push((&b.secret_name, &b.username_key));
            refs.push((&b.secret_name, &b.password_key));
        }
        if let Some(t) = &r.tls {
            for key in [&t.ca_key, &t.cert_key, &t.key_key].into_iter().flatten() {
                refs.push((&t.secret_name, key));
            }
        }
        // One read per Secret, however many of its keys are used.
        let mut read: Option<(&str, Secret)> = None;
        for (name, key) in refs {
            if read.as_ref().is_none_or(|(n, _)| *n != name) {
                read = Some((name, fetch(&api, namespace, name, resource).await?));
            }
            let (_, secret) = read.as_ref().expect("invariant: just read");
            used.push((name.to_owned(), key.to_owned(), value(secret, name, key)?));
        }
    }
    let Some(auth) = auth else {
        return Ok(Resolved {
            credentials: creds,
            fingerprint: fingerprint(&used),
        });
    };
    if let Some(sasl) = &auth.sasl {
        let secret = fetch(&api, namespace, &sasl.secret_name, resource).await?;
        let user = value(&secret, &sasl.secret_name, &sasl.username_key)?;
        let password = value(&secret, &sasl.secret_name, &sasl.password_key)?;
        used.push((
            sasl.secret_name.clone(),
            sasl.username_key.clone(),
            user.clone(),
        ));
        used.push((
            sasl.secret_name.clone(),
            sasl.password_key.clone(),
            password.clone(),
        ));
        creds.sasl = Some((user, password));
    }
    if let Some(tls) = &auth.tls
        && let Some(name) = &tls.secret_name
    {
        let secret = fetch(&api, namespace, name, resource).await?;
        let mut read = |key: &Option<String>| -> Result<Option<String>, Error> {
            let Some(k) = key else { return Ok(None) };
            let v = value(&secret, name, k)?;
            used.push((name.clone(), k.clone(), v.clone()));
            Ok(Some(v))
        };
        creds.tls_ca = read(&tls.ca_key)?;
        creds.tls_cert = read(&tls.cert_key)?;
        creds.tls_key = read(&tls.key_key)?;
    }
    Ok(Resolved {
        credentials: creds,
        fingerprint: fingerprint(&used),
    })
}

/// Whether a Secret with these annotations lets `resource` use it. Pure.
pub fn allows(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    resource: &str,
) -> bool {
    annotations
        .and_then(|a| a.get(ALLOWED_CONSUMERS_ANNOTATION))
        .is_some_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|n| n == "*" || n == resource)
        })
}

/// Hex SHA-256 over `(secret, key, value)` triples, each part length-prefixed. Pure.
pub fn fingerprint(used: &[(String, String, String)]) -> Option<String> {
    if used.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    for (secret, key, value) in used {
        for part in [secret, key, value] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    Some(hex::encode(h.finalize()))
}

async fn fetch(
    api: &Api<Secret>,
    namespace: &str,
    name: &str,
    resource: &str,
) -> Result<Secret, Error> {
    let secret = api
        .get_opt(name)
        .await
        .map_err(|source| Error::ReadSecret {
            name: name.to_owned(),
            source,
        })?
        .ok_or_else(|| Error::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
    if !allows(secret.metadata.annotations.as_ref(), resource) {
        return Err(Error::SecretNotAllowed {
            name: name.to_owned(),
            resource: resource.to_owned(),
        });
    }
    Ok(secret)
}

fn value(secret: &Secret, name: &str, key: &str) -> Result<String, Error> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .ok_or_else(|| Error::SecretKeyNotFound {
            name: name.to_owned(),
            key: key.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn annotated(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ALLOWED_CONSUMERS_ANNOTATION.to_owned(), value.to_owned())])
    }

    #[test]
    fn a_secret_is_usable_only_by_the_resources_it_names() {
        assert!(!allows(None, "orders"), "no annotation: nobody");
        assert!(!allows(Some(&BTreeMap::new()), "orders"));
        assert!(allows(Some(&annotated("orders")), "orders"));
        assert!(allows(Some(&annotated("payments, orders")), "orders"));
        assert!(allows(Some(&annotated("*")), "orders"));
        assert!(!allows(Some(&annotated("payments")), "orders"));
        assert!(
            !allows(Some(&annotated("orders-2")), "orders"),
            "whole names only"
        );
        assert!(!allows(Some(&annotated("")), "orders"));
    }

    #[test]
    fn the_fingerprint_follows_every_value_and_only_them() {
        let t = |s: &str, k: &str, v: &str| (s.to_owned(), k.to_owned(), v.to_owned());
        let a = fingerprint(&[t("u", "username", "alice"), t("u", "password", "one")]);
        let rotated = fingerprint(&[t("u", "username", "alice"), t("u", "password", "two")]);
        assert_ne!(a, rotated, "a rotated password rolls the pods");
        assert_eq!(
            a,
            fingerprint(&[t("u", "username", "alice"), t("u", "password", "one")]),
            "stable"
        );
        // Length-prefixed: moving a character between parts is a different input.
        assert_ne!(
            fingerprint(&[t("ab", "c", "d")]),
            fingerprint(&[t("a", "bc", "d")])
        );
        assert_eq!(fingerprint(&[]), None);
    }
}
