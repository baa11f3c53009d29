//! The harness the server integration tests share: `process` runs `mxfed serve --dev` as child
//! processes and drives them with `mxfed admin`; `inproc` runs servers inside the test (TLS on
//! real loopback sockets) and drives them through the library.
// Each test binary uses only some of these helpers.
#![allow(dead_code)]

pub mod inproc;
pub mod mutate;
pub mod process;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
