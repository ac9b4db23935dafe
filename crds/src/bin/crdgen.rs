//! Prints a CRD as YAML: `KafkaConsumerProxy` by default, `KafkaConsumerProxyOperation` with
//! the argument `operation`.
//!
//! `cargo run -p kcp-crds --bin crdgen > manifests/crds/kafkaconsumerproxies.yaml`
//! `cargo run -p kcp-crds --bin crdgen operation > manifests/crds/kafkaconsumerproxyoperations.yaml`

use std::io::Write;

fn main() -> std::io::Result<()> {
    let yaml = match std::env::args().nth(1).as_deref() {
        None => kcp_crds::crd_yaml(),
        Some("operation") => kcp_crds::operation_crd_yaml(),
        Some(other) => {
            eprintln!("crdgen: unknown CRD {other:?}; use no argument or `operation`");
            std::process::exit(2);
        }
    };
    std::io::stdout().write_all(yaml.as_bytes())
}
