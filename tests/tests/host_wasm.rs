//! The whole vectors corpus through the JavaScript package (`host-wasm/pkg`, the core as wasm
//! behind wasm-bindgen and the JS API) in Node, via the JSON-lines adapter
//! `host-wasm/tests/host_adapter.mjs`: byte for byte what the native core gives.
//!
//! Needs `node` and the package built by `host-wasm/build.sh` (`MXFED_WASM_PKG` points at it,
//! else `host-wasm/pkg`). Either missing: the test fails when `CI` is set and skips with a note
//! otherwise. It is `#[ignore]`d in the workspace-wide `cargo test`, which runs before the wasm
//! stage has built the package; `scripts/test.d/30-wasm.sh` runs it with `--include-ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

fn skip_or_fail(msg: &str) {
    assert!(std::env::var_os("CI").is_none(), "host_wasm: {msg}");
    eprintln!("\n!!! SKIPPED host_wasm: {msg}\n");
}

#[test]
#[ignore = "needs node and host-wasm/pkg from host-wasm/build.sh; scripts/test.d/30-wasm.sh runs it"]
fn node_reproduces_every_vector() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let pkg = std::env::var_os("MXFED_WASM_PKG")
        .map_or_else(|| root.join("host-wasm/pkg"), PathBuf::from);
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        return skip_or_fail("node is not on PATH");
    }
    if !pkg.join("node.js").is_file() {
        return skip_or_fail(&format!(
            "{} is missing: run host-wasm/build.sh",
            pkg.join("node.js").display()
        ));
    }
    let adapter = root.join("host-wasm/tests/host_adapter.mjs");
    let host = mxfed_conformance::ProcessHost::spawn(
        "node",
        "node",
        &[adapter.to_str().unwrap(), pkg.to_str().unwrap()],
    )
    .unwrap();
    mxfed_conformance::run_all(&host).assert_ok("node", 1000);
}
