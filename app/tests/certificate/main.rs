//! Step 1, Certificate: the CLI that makes and renews the CA and server certificate, and the
//! certificates held against real TLS clients (OpenSSL, BearSSL built from Debian's package,
//! rustls).
//!
//! The integration tests are grouped by the step they exercise, one binary each, so CI links
//! six binaries instead of one per file (each links every crate); a test runs alone with
//! `cargo test --test certificate NAME`.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod openssl;
mod signing;
mod tls;
