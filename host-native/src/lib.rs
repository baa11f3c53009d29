//! `mxfed-native`: the host side of mxfed — the `mxfed` command line and `mxfed serve`, a
//! federation server on axum with SQLite storage. Protocol decisions live in `mxfed-core`; this
//! crate moves bytes, keeps time, stores and retries.

pub mod server;
