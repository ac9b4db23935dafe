//! Prints the API reference (Markdown) generated from the CRD schema.
//!
//! `cargo run -p kcp-crds --bin apidoc > docs/api.md`

use std::io::Write;

fn main() -> std::io::Result<()> {
    std::io::stdout().write_all(kcp_crds::apidoc::api_reference_markdown().as_bytes())
}
