//! Two `mxfed serve --dev` processes on loopback federate: a room created on A, a user of B
//! invited, B auto-accepts and joins with make_join/send_join, messages flow both ways and show
//! up in `mxfed admin room timeline` on both sides, the state is the same on both, and a server
//! killed and restarted has lost nothing (including what was queued for it while it was down).
//! No sleeps: the test waits on `mxfed admin room wait` (the server wakes it when events land).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::free_port;
use common::process::Server;
use std::process::Command;

impl Server {
    fn timeline_ids(&self, room: &str) -> Vec<String> {
        self.admin(&["room", "timeline", room])
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert!(v.get("content").is_some(), "a PDU: {l}");
                v
            })
            .map(|v| v["content"]["body"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

#[test]
fn two_servers_federate_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // No server running: one coded error line, exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_mxfed"))
        .args(["admin", "--data-dir"])
        .arg(dir.path().join("none"))
        .arg("status")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.starts_with("mxfed: error[admin_not_running]: ") && stderr.lines().count() == 1,
        "{stderr}"
    );

    let (pa, pb) = (free_port(), free_port());
    let a = Server::start(&dir.path().join("a"), pa);
    let b = Server::start(&dir.path().join("b"), pb);
    assert!(dir.path().join("a/signing.key").exists());

    let alice = a.admin(&["user", "create", "alice", "--display-name", "Alice"]);
    assert_eq!(alice, format!("@alice:{}", a.name()));
    let bob = b.admin(&["user", "create", "bob", "--auto-accept"]);
    assert_eq!(bob, format!("@bob:{}", b.name()));

    let room = a.admin(&["room", "create", "--as", "alice"]);
    assert!(room.starts_with('!'), "{room}");
    a.admin(&["room", "invite", &room, &bob, "--as", "alice"]);
    // B auto-accepts: make_join/send_join through A.
    a.admin(&["room", "wait", &room, "--joined", &bob, "--timeout", "60"]);
    b.admin(&["room", "wait", &room, "--joined", &bob, "--timeout", "60"]);
    let invites = b.admin(&["invites", "--as", "bob"]);
    assert!(
        invites.contains(&room) && invites.contains("\"status\":\"accepted\""),
        "{invites}"
    );

    let m1 = a.admin(&["room", "send", &room, "hello from A", "--as", "alice"]);
    b.wait_event(&room, &m1);
    let m2 = b.admin(&["room", "send", &room, "hello from B", "--as", "bob"]);
    a.wait_event(&room, &m2);
    let topic = a.admin(&[
        "room",
        "state-set",
        &room,
        "m.room.topic",
        "",
        r#"{"topic":"t"}"#,
        "--as",
        "alice",
    ]);
    b.wait_event(&room, &topic);

    for s in [&a, &b] {
        let bodies = s.timeline_ids(&room);
        assert!(
            bodies.ends_with(&["hello from A".into(), "hello from B".into(), String::new()]),
            "{bodies:?}"
        );
    }
    let state_a = a.admin(&["room", "state", &room]);
    assert_eq!(
        state_a,
        b.admin(&["room", "state", &room]),
        "same state on both"
    );
    assert!(state_a.contains("m.room.topic"));

    // Redaction by the sender travels too.
    let red = b.admin(&["room", "redact", &room, &m2, "--as", "bob"]);
    a.wait_event(&room, &red);
    assert!(!a
        .admin(&["room", "timeline", &room])
        .contains("hello from B"));

    // Kill A (no clean shutdown); B sends while A is down: queued, persisted, retried.
    let timeline_a = a.admin(&["room", "timeline", &room]);
    a.kill();
    let m3 = b.admin(&["room", "send", &room, "while A was down", "--as", "bob"]);
    let a = Server::start(&dir.path().join("a"), pa);
    // B's queue may already have delivered its message: what A had comes first, unchanged.
    let after = a.admin(&["room", "timeline", &room]);
    assert!(
        after.starts_with(&timeline_a),
        "nothing lost across the restart:\n{timeline_a}\n---\n{after}"
    );
    assert_eq!(a.admin(&["room", "state", &room]), state_a);
    // A talks to B again, which tells B's queue that A is back.
    let m4 = a.admin(&["room", "send", &room, "back", "--as", "alice"]);
    a.wait_event(&room, &m3);
    b.wait_event(&room, &m4);
    assert_eq!(
        a.admin(&["room", "state", &room]),
        b.admin(&["room", "state", &room])
    );
    let bodies = a.timeline_ids(&room);
    assert!(bodies.contains(&"while A was down".to_owned()) && bodies.contains(&"back".to_owned()));
}
