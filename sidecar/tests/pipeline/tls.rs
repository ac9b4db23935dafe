//! An https endpoint: the binary verifies the app's certificate against `SSL_CERT_FILE` and
//! delivers over TLS.

use std::{
    convert::Infallible,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};

use crate::support::{
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a leaf certificate for 127.0.0.1, signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=kcp-test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// Serves https on 127.0.0.1; records the offsets it answered 200.
async fn tls_app(dir: &Path) -> (String, Arc<Mutex<Vec<i64>>>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .expect("leaf.pem")
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).expect("leaf.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://{}/deliver", listener.local_addr().expect("addr"));
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, g) = (acceptor.clone(), Arc::clone(&g));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req: Request<Incoming>| {
                    let g = Arc::clone(&g);
                    async move {
                        let offset = req
                            .headers()
                            .get("kcp-offset")
                            .and_then(|v| v.to_str().ok()?.parse().ok());
                        if let Some(o) = offset {
                            g.lock().expect("lock").push(o);
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_an_https_endpoint_verifying_its_certificate() {
    init_logging();
    let dir = std::env::temp_dir().join(unique("kcp-tls"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    certificates(&dir);
    let (url, got) = tls_app(&dir).await;
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("tls"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    kafka
        .produce(
            &topic,
            &(0..3)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &url, |c| {
        c["log"]["level"] = json!("warn");
    });
    let path = dir.join("config.json");
    std::fs::write(&path, cfg.to_json_pretty()).expect("write config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kcp-sidecar"))
        .env("KCP_CONFIG", &path)
        .env("SSL_CERT_FILE", dir.join("ca.pem"))
        .env_remove("SSL_CERT_DIR")
        .kill_on_drop(true)
        .spawn()
        .expect("start sidecar");
    wait_until("three records delivered over TLS", || {
        got.lock().expect("lock").len() >= 3
    })
    .await;
    wait_until_async("committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(3)]
    })
    .await;
    let pid = child.id().expect("pid");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(child.wait().await.expect("exit").code(), Some(0));
    let mut offsets = got.lock().expect("lock").clone();
    offsets.sort_unstable();
    assert_eq!(offsets, [0, 1, 2]);
    let _ = std::fs::remove_dir_all(&dir);
}
