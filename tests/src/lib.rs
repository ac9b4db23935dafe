//! Checks that span the crates live in `tests/tests/`; this library is empty on purpose.
