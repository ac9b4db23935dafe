//! Secrets: checks that the Secrets named in `spec.kafka.auth` exist and hold the named keys,
//! and returns their values for the lag probe.
//!
//! Reads only (`get` on single Secrets; never list or watch). Values stay in memory, in
//! [`Credentials`]; nothing here or downstream writes them into any object: the sidecar gets
//! them through `secretKeyRef` env vars and a Secret volume built by `build`.

use k8s_openapi::api::core::v1::Secret;
use kcp_crds::v1alpha1::KafkaAuth;
use kube::{Api, Client};

use crate::{Error, lag::Credentials};

/// Reads the referenced Secrets. Missing Secret or key: an error the user must fix.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    auth: Option<&KafkaAuth>,
) -> Result<Credentials, Error> {
    let mut creds = Credentials::default();
    let Some(auth) = auth else {
        return Ok(creds);
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(sasl) = &auth.sasl {
        let secret = fetch(&api, namespace, &sasl.secret_name).await?;
        let user = value(&secret, &sasl.secret_name, &sasl.username_key)?;
        let password = value(&secret, &sasl.secret_name, &sasl.password_key)?;
        creds.sasl = Some((user, password));
    }
    if let Some(tls) = &auth.tls
        && let Some(name) = &tls.secret_name
    {
        let secret = fetch(&api, namespace, name).await?;
        let read = |key: &Option<String>| key.as_ref().map(|k| value(&secret, name, k)).transpose();
        creds.tls_ca = read(&tls.ca_key)?;
        creds.tls_cert = read(&tls.cert_key)?;
        creds.tls_key = read(&tls.key_key)?;
    }
    Ok(creds)
}

async fn fetch(api: &Api<Secret>, namespace: &str, name: &str) -> Result<Secret, Error> {
    api.get_opt(name)
        .await
        .map_err(|source| Error::ReadSecret {
            name: name.to_owned(),
            source,
        })?
        .ok_or_else(|| Error::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
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
