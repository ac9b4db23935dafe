//! Prints the `KafkaConsumerProxy` CRD as YAML.
//!
//! `cargo run -p kcp-crds --bin crdgen > manifests/crds/kafkaconsumerproxies.yaml`

use std::io::Write;

fn main() -> std::io::Result<()> {
    std::io::stdout().write_all(kcp_crds::crd_yaml().as_bytes())
}
