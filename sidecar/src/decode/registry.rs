//! The schema registry client: the only code that talks to the registry.
//!
//! Two reads of the Confluent REST API, `GET <url>/schemas/ids/<id>` (a record's schema) and
//! `GET <url>/subjects/<subject>/versions/<version>` (a schema it references), each bounded by
//! `requestTimeout`, over a pooled keep-alive client (https with the system roots, or the CA and
//! client certificate of `kafka.schemaRegistry.tls`; HTTP basic auth with the credentials from the
//! environment). Every answer is sorted by the pure [`read_answer`] into a schema, **not found**
//! (the record's fault: HTTP 404 with a registry error code `404xx`, such as `40403 Schema not
//! found`) or **unavailable** (everything else: refused, timed out, 5xx, 401/403, and a 404 without
//! a registry error code, which is a wrong URL rather than a missing schema). Only "not found"
//! may send a record to `onExhausted`; "unavailable" makes it wait, so a misconfigured or down
//! registry never floods the dead-letter topic.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use kcp_crds::config::{
    SCHEMA_REGISTRY_PASSWORD_ENV, SCHEMA_REGISTRY_USERNAME_ENV, SchemaRegistryConfig,
};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde::Deserialize;

use crate::forward::error_chain;

/// Registry answers larger than this are refused (an unavailable registry, not a bad record).
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// The media type the registry API answers with.
const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/json";

/// What a path segment must percent-encode (RFC 3986 `pchar` allows the rest).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A schema's kind, as the registry reports it (`schemaType`, absent for Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

/// A reference from one schema to another registered schema.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reference {
    /// The name the referencing schema uses: an Avro full name, a `.proto` import path, a JSON
    /// Schema `$ref` URI.
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// A schema as the registry serves it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaText {
    #[serde(default = "avro")]
    pub schema_type: SchemaType,
    pub schema: String,
    #[serde(default)]
    pub references: Vec<Reference>,
}

fn avro() -> SchemaType {
    SchemaType::Avro
}

/// Why a read gave no schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The registry says it has no such schema (or subject, or version).
    #[error("{0}")]
    NotFound(String),
    /// The registry could not be asked, or did not answer usefully.
    #[error("{0}")]
    Unavailable(String),
}

/// Why the client could not be built from the config.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("kafka.schemaRegistry.basicAuth: {0} is not set")]
    MissingCredential(&'static str),
    #[error("kafka.schemaRegistry: reading {path}: {reason}")]
    TlsFile { path: String, reason: String },
    #[error("kafka.schemaRegistry: TLS setup: {0}")]
    Tls(String),
}

/// The registry client; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Registry {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: String,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl Registry {
    /// Builds the client; `env` gives the basic-auth credentials.
    pub fn new(
        config: &SchemaRegistryConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, RegistryError> {
        let authorization = if config.basic_auth {
            let user = env(SCHEMA_REGISTRY_USERNAME_ENV).ok_or(
                RegistryError::MissingCredential(SCHEMA_REGISTRY_USERNAME_ENV),
            )?;
            let password = env(SCHEMA_REGISTRY_PASSWORD_ENV).ok_or(
                RegistryError::MissingCredential(SCHEMA_REGISTRY_PASSWORD_ENV),
            )?;
            let token = STANDARD.encode(format!("{user}:{password}"));
            let mut v = HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|_| RegistryError::MissingCredential(SCHEMA_REGISTRY_USERNAME_ENV))?;
            v.set_sensitive(true);
            Some(v)
        } else {
            None
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            .build(connector(config)?);
        Ok(Self {
            client,
            base: config.url.trim_end_matches('/').to_owned(),
            authorization,
            timeout: config.request_timeout.as_std(),
        })
    }

    /// `GET /schemas/ids/<id>`.
    pub async fn schema_by_id(&self, id: u32) -> Result<SchemaText, FetchError> {
        self.get(&format!("/schemas/ids/{id}"), &format!("schema id {id}"))
            .await
    }

    /// `GET /subjects/<subject>/versions/<version>`.
    pub async fn subject_version(
        &self,
        subject: &str,
        version: i32,
    ) -> Result<SchemaText, FetchError> {
        let segment = utf8_percent_encode(subject, SEGMENT);
        let path = if version < 0 {
            format!("/subjects/{segment}/versions/latest")
        } else {
            format!("/subjects/{segment}/versions/{version}")
        };
        self.get(&path, &format!("subject {subject:?} version {version}"))
            .await
    }

    async fn get(&self, path: &str, what: &str) -> Result<SchemaText, FetchError> {
        let unavailable = |why: String| {
            FetchError::Unavailable(format!("schema registry, reading {what}: {why}"))
        };
        let mut req = Request::get(format!("{}{path}", self.base))
            .header(header::ACCEPT, ACCEPT)
            .body(Empty::new())
            .map_err(|e| unavailable(format!("invalid request: {e}")))?;
        if let Some(auth) = &self.authorization {
            req.headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| error_chain(&e))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(unavailable(format!(
                "no answer within {}ms (requestTimeout)",
                self.timeout.as_millis()
            ))),
            Ok(Err(e)) => Err(unavailable(e)),
            Ok(Ok((status, body))) => read_answer(status, &body, what),
        }
    }
}

/// Sorts a registry answer (see the module docs). Pure.
pub fn read_answer(status: StatusCode, body: &[u8], what: &str) -> Result<SchemaText, FetchError> {
    #[derive(Deserialize)]
    struct ApiError {
        error_code: i64,
        #[serde(default)]
        message: String,
    }
    if status.is_success() {
        return serde_json::from_slice::<SchemaText>(body).map_err(|e| {
            FetchError::Unavailable(format!(
                "schema registry, reading {what}: status {status} with an answer that is not a schema: {e}"
            ))
        });
    }
    let api_error = serde_json::from_slice::<ApiError>(body).ok();
    match api_error {
        Some(e) if status == StatusCode::NOT_FOUND && e.error_code / 100 == 404 => {
            Err(FetchError::NotFound(format!(
                "the schema registry has no {what} (error {}: {})",
                e.error_code, e.message
            )))
        }
        Some(e) => Err(FetchError::Unavailable(format!(
            "schema registry, reading {what}: status {status}, error {}: {}",
            e.error_code, e.message
        ))),
        None if status == StatusCode::NOT_FOUND => Err(FetchError::Unavailable(format!(
            "schema registry, reading {what}: status 404 without a registry error code: is kafka.schemaRegistry.url the registry's base URL?"
        ))),
        None => Err(FetchError::Unavailable(format!(
            "schema registry, reading {what}: status {status}"
        ))),
    }
}

/// TCP + TLS: the system roots, or the configured CA and client certificate.
fn connector(
    config: &SchemaRegistryConfig,
) -> Result<HttpsConnector<HttpConnector>, RegistryError> {
    let https = config.url.starts_with("https://");
    if config.ca_file.is_none() && config.cert_file.is_none() {
        return crate::forward::connector(config.request_timeout.as_std(), https)
            .map_err(|e| RegistryError::Tls(e.to_string()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| tls_file(path, e))? {
                roots
                    .add(cert.map_err(|e| tls_file(path, e))?)
                    .map_err(|e| tls_file(path, e))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let tls = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| tls_file(cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_file(cert, e))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_file(key, e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| RegistryError::Tls(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(config.request_timeout.as_std()));
    http.set_nodelay(true);
    http.enforce_http(false);
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

fn tls_file(path: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::TlsFile {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_is_read_with_its_type_and_references() {
        let body = br#"{"schemaType":"PROTOBUF","schema":"syntax = \"proto3\";","references":[{"name":"a.proto","subject":"a","version":2}]}"#;
        let s = read_answer(StatusCode::OK, body, "schema id 1").expect("schema");
        assert_eq!(s.schema_type, SchemaType::Protobuf);
        assert_eq!(
            s.references,
            vec![Reference {
                name: "a.proto".into(),
                subject: "a".into(),
                version: 2
            }]
        );
        let avro = read_answer(StatusCode::OK, br#"{"schema":"\"string\""}"#, "x").expect("avro");
        assert_eq!(
            avro.schema_type,
            SchemaType::Avro,
            "no schemaType means Avro"
        );
    }

    #[test]
    fn only_a_registry_404_is_not_found_everything_else_is_an_outage() {
        let not_found = read_answer(
            StatusCode::NOT_FOUND,
            br#"{"error_code":40403,"message":"Schema not found"}"#,
            "schema id 9",
        );
        assert!(
            matches!(&not_found, Err(FetchError::NotFound(m)) if m.contains("no schema id 9") && m.contains("40403")),
            "{not_found:?}"
        );
        assert!(matches!(
            read_answer(
                StatusCode::NOT_FOUND,
                br#"{"error_code":40401,"message":"Subject 'x' not found."}"#,
                "subject"
            ),
            Err(FetchError::NotFound(_))
        ));
        for (status, body) in [
            (StatusCode::NOT_FOUND, &b"<html>nginx</html>"[..]),
            (StatusCode::NOT_FOUND, b""),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error_code":50001,"message":"store error"}"#,
            ),
            (StatusCode::SERVICE_UNAVAILABLE, b""),
            (
                StatusCode::UNAUTHORIZED,
                br#"{"error_code":401,"message":"Unauthorized"}"#,
            ),
            (StatusCode::FORBIDDEN, b""),
            (StatusCode::OK, b"not json"),
            (StatusCode::OK, br#"{"no":"schema"}"#),
        ] {
            let got = read_answer(status, body, "schema id 1");
            assert!(
                matches!(got, Err(FetchError::Unavailable(_))),
                "{status} {body:?}: {got:?}"
            );
        }
        let wrong_url = read_answer(StatusCode::NOT_FOUND, b"", "schema id 1");
        assert!(
            matches!(&wrong_url, Err(FetchError::Unavailable(m)) if m.contains("kafka.schemaRegistry.url")),
            "{wrong_url:?}"
        );
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(
            utf8_percent_encode("a/b c%d", SEGMENT).to_string(),
            "a%2Fb%20c%25d"
        );
        assert_eq!(
            utf8_percent_encode("orders-value", SEGMENT).to_string(),
            "orders-value"
        );
    }
}
