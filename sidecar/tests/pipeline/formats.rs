//! Record formats (`endpoint.format`, `endpoint.decode`): CloudEvents requests, and Avro,
//! Protobuf and JSON Schema records decoded to JSON through a schema registry stand-in on
//! loopback (`kcp_sidecar::demo::RegistryStandIn`). Golden outputs are in `formats/golden/`
//! (`KCP_UPDATE_SNAPSHOTS=1` rewrites them; review the diff). CloudEvents requests are checked
//! against the specs' examples in `sidecar/src/forward/cloudevents/tests.rs`.

mod decoder;
mod delivery;
mod fixtures;
