//! Placeholder: the benchmark program is built in its own issue.

fn main() {}
