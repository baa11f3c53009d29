//! `mxfed serve` logs through `tracing`: with `[log] format = "json"` every line on stderr is a
//! JSON object, and a transaction from another server is one event with its fields; a bad
//! level is a one-line error and exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::free_port;
use common::process::Server;
use std::process::Command;

#[test]
fn json_logs_carry_the_fields_of_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = Server::start(&dir.path().join("a"), pa);
    // B's config, written on its first run, switched to JSON lines.
    let b = Server::start(&dir.path().join("b"), pb);
    b.kill();
    let cfg = dir.path().join("b/mxfed.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("format = \"text\""), "{text}");
    std::fs::write(&cfg, text.replace("format = \"text\"", "format = \"json\"")).unwrap();
    let b = Server::start(&dir.path().join("b"), pb);

    a.admin(&["user", "create", "alice"]);
    let bob = b.admin(&["user", "create", "bob", "--auto-accept"]);
    let room = a.public_room("alice");
    a.admin(&["room", "invite", &room, &bob, "--as", "alice"]);
    b.admin(&["room", "wait", &room, "--joined", &bob, "--timeout", "60"]);
    let msg = a.admin(&["room", "send", &room, "hello", "--as", "alice"]);
    b.wait_event(&room, &msg);

    let log = b.log.lock().unwrap().clone();
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.starts_with("!!"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let txn = events
        .iter()
        .find(|e| e["fields"]["message"] == "transaction received" && e["fields"]["pdus"] != 0)
        .unwrap_or_else(|| panic!("no transaction event in:\n{log}"));
    assert_eq!(txn["level"], "INFO");
    assert_eq!(txn["fields"]["origin"], format!("localhost:{pa}"));
    assert_eq!(txn["fields"]["refused"], 0);
    assert!(txn["fields"]["txn"].is_string() && txn["fields"]["ms"].is_number());
}

#[test]
fn a_bad_log_level_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_mxfed"))
        .args(["serve", "--dev", "--data-dir"])
        .arg(dir.path())
        .args(["--server-name", &format!("localhost:{port}")])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("MXFED_LOG", "mxfed_native=loud")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("log level"), "{stderr}");
}
