//! The admin commands that reach other servers, on two `mxfed serve --dev` processes on
//! loopback: `mxfed admin room typing` and `room receipt` send m.typing and m.receipt EDUs
//! through the outbound queue to every other server in the room (what the receiver stores,
//! `mxfed admin edus`, is checked); `mxfed admin query profile|directory` ask another server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::free_port;
use common::process::Server;

impl Server {
    fn admin_fails(&self, args: &[&str]) -> String {
        let out = self.admin_output(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "mxfed admin {args:?} should fail"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The EDUs received for a room, as JSON values.
    fn edus(&self, room: &str) -> Vec<serde_json::Value> {
        self.admin(&["edus", room])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits (bounded) until a received EDU of the room satisfies `pred`. The admin API has no
    /// wait for EDUs, so this polls; the bound is generous and no duration is asserted.
    fn wait_edu(&self, room: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if self.edus(room).iter().any(&pred) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} arrived; EDUs: {:?}\nserver log:\n{}",
                self.edus(room),
                self.log.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[test]
fn typing_and_receipts_reach_the_other_server() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = Server::start(&dir.path().join("a"), pa);
    let b = Server::start(&dir.path().join("b"), pb);
    let alice = a.admin(&["user", "create", "alice"]);
    a.admin(&["user", "create", "dave"]);
    let bob = b.admin(&["user", "create", "bob", "--auto-accept"]);
    let room = a.admin(&["room", "create", "--as", "alice"]);

    // Alone in the room: no other server to tell.
    let alone = a.admin(&["room", "typing", &room, "--as", "alice"]);
    assert_eq!(alone, r#"{"destinations":[]}"#);

    a.admin(&["room", "invite", &room, &bob, "--as", "alice"]);
    a.admin(&["room", "wait", &room, "--joined", &bob, "--timeout", "60"]);
    b.admin(&["room", "wait", &room, "--joined", &bob, "--timeout", "60"]);

    // A user who is not in the room may neither type nor read there.
    let err = a.admin_fails(&["room", "typing", &room, "--as", "dave"]);
    assert!(err.contains("M_FORBIDDEN"), "{err}");

    let dests = a.admin(&["room", "typing", &room, "--as", "alice"]);
    assert_eq!(dests, format!(r#"{{"destinations":["{}"]}}"#, b.name()));
    let from_alice = |typing: bool| {
        let alice = alice.clone();
        let room = room.clone();
        move |e: &serde_json::Value| {
            e["edu_type"] == "m.typing"
                && e["origin"] == format!("localhost:{pa}")
                && e["content"]["user_id"] == alice.as_str()
                && e["content"]["room_id"] == room.as_str()
                && e["content"]["typing"] == typing
        }
    };
    b.wait_edu(&room, "typing start", from_alice(true));

    // --stop says so at once; --timeout says it later on its own.
    a.admin(&["room", "typing", &room, "--as", "alice", "--stop"]);
    b.wait_edu(&room, "typing stop", from_alice(false));
    // One row per (room, user), the latest: a later stop replaces the first.
    let last_stop = |s: &Server| {
        s.edus(&room)
            .iter()
            .filter(|e| from_alice(false)(e))
            .map(|e| e["received_ts"].as_i64().unwrap())
            .max()
    };
    let before = last_stop(&b);
    a.admin(&["room", "typing", &room, "--as", "alice", "--timeout", "200"]);
    b.wait_edu(&room, "a second typing stop", |_| last_stop(&b) > before);
    assert_eq!(
        b.edus(&room)
            .iter()
            .filter(|e| e["edu_type"] == "m.typing")
            .count(),
        1,
        "alice's latest typing notice only"
    );

    // The other way, and a receipt for a message.
    let m = a.admin(&["room", "send", &room, "read me", "--as", "alice"]);
    b.wait_event(&room, &m);
    b.admin(&["room", "typing", &room, "--as", "bob"]);
    let dests = b.admin(&["room", "receipt", &room, &m, "--as", "bob"]);
    assert_eq!(dests, format!(r#"{{"destinations":["{}"]}}"#, a.name()));
    a.wait_edu(&room, "bob's typing", |e| {
        e["edu_type"] == "m.typing" && e["content"]["user_id"] == bob.as_str()
    });
    a.wait_edu(&room, "bob's receipt", |e| {
        let r = &e["content"][room.as_str()]["m.read"][bob.as_str()];
        e["edu_type"] == "m.receipt"
            && r["event_ids"] == serde_json::json!([m.as_str()])
            && r["data"]["ts"].is_i64()
    });

    // A receipt for an event the room does not have is refused.
    let err = b.admin_fails(&["room", "receipt", &room, "$nope", "--as", "bob"]);
    assert!(err.contains("M_NOT_FOUND"), "{err}");
}

#[test]
fn profile_and_directory_queries_reach_the_other_server() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = Server::start(&dir.path().join("a"), pa);
    let b = Server::start(&dir.path().join("b"), pb);
    let alice = a.admin(&["user", "create", "alice", "--display-name", "Alice"]);

    let p = b.admin(&["query", "profile", &alice]);
    assert_eq!(p, r#"{"displayname":"Alice"}"#);
    let p = b.admin(&["query", "profile", &alice, "--field", "displayname"]);
    assert_eq!(p, r#"{"displayname":"Alice"}"#);
    // The other server's refusals come back as they were.
    let err = b.admin_fails(&["query", "profile", &format!("@nobody:{}", a.name())]);
    assert!(err.contains("HTTP 404 M_NOT_FOUND"), "{err}");
    let err = b.admin_fails(&["query", "directory", &format!("#room:{}", a.name())]);
    assert!(err.contains("HTTP 404 M_NOT_FOUND"), "{err}");
    let err = b.admin_fails(&["query", "directory", "no-alias"]);
    assert!(err.contains("M_INVALID_PARAM"), "{err}");
}
