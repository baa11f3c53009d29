//! Rooms across `mxfed serve --dev` processes on loopback: history fetched with `/backfill`
//! after a join (and what history visibility lets through), restricted joins authorised by the
//! resident server, three servers with one going down and catching up, and a receiving server
//! killed with SIGKILL while a sender streams transactions. No sleeps: the tests wait on
//! `mxfed admin room wait`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::free_port;
use common::process::{alice_and_bob, Server};
use std::process::Command;

impl Server {
    /// Runs `mxfed admin` expecting it to fail; returns its stderr.
    fn admin_fails(&self, args: &[&str]) -> String {
        let out = self.admin_output(args);
        assert!(!out.status.success(), "mxfed admin {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    /// The room's timeline as parsed PDUs.
    fn timeline(&self, room: &str) -> Vec<serde_json::Value> {
        self.admin(&["room", "timeline", room])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The timeline's event IDs (rooms of the default version, 12, whose PDUs carry none).
    fn timeline_event_ids(&self, room: &str) -> Vec<String> {
        let v = mxfed_core::RoomVersion::get("12").unwrap();
        self.admin(&["room", "timeline", room])
            .lines()
            .map(|l| {
                let o = mxfed_core::canonical::parse_object(
                    l.as_bytes(),
                    &mxfed_core::canonical::ParseOptions::LEGACY,
                )
                .unwrap();
                mxfed_core::event::event_id(&o, v).unwrap()
            })
            .collect()
    }

    fn joined(&self, room: &str, user: &str) {
        self.admin(&["room", "wait", room, "--joined", user, "--timeout", "60"]);
    }
}

fn body(v: &serde_json::Value) -> &str {
    v["content"]["body"].as_str().unwrap_or("")
}

/// B's user joins A's room after messages were sent: B backfills them, so both timelines hold
/// the same events in the same order, and B's current state is A's. Under `joined` history
/// visibility the messages before the join reach B redacted. A redaction made while B's user
/// was away reaches B in the backfilled gap and applies. Both survive a restart of B.
#[test]
fn backfill_after_join_respects_history_visibility() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, bob) = alice_and_bob(dir.path());
    let pb = b.port;

    // Shared (the default of `room create`): B sees everything said before its join.
    let shared = a.admin(&["room", "create", "--as", "alice"]);
    let m1 = a.admin(&["room", "send", &shared, "before one", "--as", "alice"]);
    a.admin(&["room", "send", &shared, "before two", "--as", "alice"]);
    a.admin(&["room", "invite", &shared, &bob, "--as", "alice"]);
    a.joined(&shared, &bob);
    b.joined(&shared, &bob);
    let ids_a = a.timeline_event_ids(&shared);
    assert_eq!(
        b.timeline_event_ids(&shared),
        ids_a,
        "same history on both:\n{}\n---\n{}",
        a.admin(&["room", "timeline", &shared]),
        b.admin(&["room", "timeline", &shared])
    );
    assert!(ids_a.contains(&m1));
    let bodies: Vec<String> = b
        .timeline(&shared)
        .iter()
        .map(|v| body(v).to_owned())
        .collect();
    let one = bodies.iter().position(|x| x == "before one").unwrap();
    let two = bodies.iter().position(|x| x == "before two").unwrap();
    assert!(one < two, "{bodies:?}");
    assert_eq!(
        a.admin(&["room", "state", &shared]),
        b.admin(&["room", "state", &shared]),
        "backfill leaves the current state alone"
    );
    // The history is live: B's own message follows it on both sides.
    let mb = b.admin(&["room", "send", &shared, "after", "--as", "bob"]);
    a.wait_event(&shared, &mb);
    assert_eq!(b.timeline_event_ids(&shared), a.timeline_event_ids(&shared));

    // Bob leaves, A's room goes on without B, bob is invited back: the events of the gap are
    // backfilled at the new join and sit between the leave and the new join.
    // While bob is away alice also redacts "before one", which B holds: the redaction reaches
    // B in the backfilled gap and applies there too.
    let leave = b.admin(&["room", "leave", &shared, "--as", "bob"]);
    a.wait_event(&shared, &leave);
    a.admin(&["room", "redact", &shared, &m1, "--as", "alice"]);
    let away = a.admin(&[
        "room",
        "send",
        &shared,
        "while bob was away",
        "--as",
        "alice",
    ]);
    a.admin(&["room", "invite", &shared, &bob, "--as", "alice"]);
    b.joined(&shared, &bob);
    assert_eq!(b.timeline_event_ids(&shared), a.timeline_event_ids(&shared));
    assert!(b.timeline_event_ids(&shared).contains(&away));
    let seen = b.admin(&["room", "timeline", &shared]);
    assert!(!seen.contains("before one"), "redacted in the gap: {seen}");
    assert!(seen.contains("before two"), "{seen}");
    // `--limit N`: the last N lines of that merged timeline (the gap's history sits in the
    // middle of B's rows, stored after the events that follow it).
    let lines: Vec<&str> = seen.lines().collect();
    for n in [1, 4, lines.len(), lines.len() + 3] {
        let last = b.admin(&["room", "timeline", &shared, "--limit", &n.to_string()]);
        assert_eq!(
            last.lines().collect::<Vec<_>>(),
            lines[lines.len().saturating_sub(n)..],
            "--limit {n}"
        );
    }

    // Joined: what was said before B's user joined reaches B redacted.
    let joined = a.admin(&["room", "create", "--as", "alice"]);
    a.admin(&[
        "room",
        "state-set",
        &joined,
        "m.room.history_visibility",
        "",
        r#"{"history_visibility":"joined"}"#,
        "--as",
        "alice",
    ]);
    let secret = a.admin(&["room", "send", &joined, "secret", "--as", "alice"]);
    a.admin(&["room", "invite", &joined, &bob, "--as", "alice"]);
    b.joined(&joined, &bob);
    let seen = b.admin(&["room", "timeline", &joined]);
    assert!(!seen.contains("secret"), "{seen}");
    let ids_b = b.timeline_event_ids(&joined);
    assert!(ids_b.contains(&secret), "the event is there, redacted");
    assert_eq!(ids_b, a.timeline_event_ids(&joined));
    let visible = a.admin(&["room", "send", &joined, "visible", "--as", "alice"]);
    b.wait_event(&joined, &visible);
    assert!(b.admin(&["room", "timeline", &joined]).contains("visible"));

    // A restart rebuilds the same rooms from storage.
    let before = (
        b.admin(&["room", "timeline", &shared]),
        b.admin(&["room", "timeline", &joined]),
        b.admin(&["room", "state", &shared]),
    );
    b.kill();
    let b = Server::start(&dir.path().join("b"), pb);
    assert_eq!(
        (
            b.admin(&["room", "timeline", &shared]),
            b.admin(&["room", "timeline", &joined]),
            b.admin(&["room", "state", &shared]),
        ),
        before
    );
}

/// A restricted room on A allowing the members of another room of A: B's user may join only
/// once joined to that room, and A (the resident) names its own user in
/// `join_authorised_via_users_server` and countersigns the join.
#[test]
fn restricted_join_authorised_by_the_resident() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = Server::start(&dir.path().join("a"), pa);
    let b = Server::start(&dir.path().join("b"), pb);
    let alice = a.admin(&["user", "create", "alice"]);
    let bob = b.admin(&["user", "create", "bob", "--auto-accept"]);

    let space = a.admin(&["room", "create", "--as", "alice"]);
    let room = a.admin(&["room", "create", "--as", "alice"]);
    let rules = format!(
        r#"{{"join_rule":"restricted","allow":[{{"type":"m.room_membership","room_id":"{space}"}}]}}"#
    );
    a.admin(&[
        "room",
        "state-set",
        &room,
        "m.room.join_rules",
        "",
        &rules,
        "--as",
        "alice",
    ]);

    // Not in the allowed room: A refuses at make_join.
    let err = b.admin_fails(&["room", "join", &room, "--via", &a.name(), "--as", "bob"]);
    assert!(err.contains("M_FORBIDDEN"), "{err}");

    a.admin(&["room", "invite", &space, &bob, "--as", "alice"]);
    a.joined(&space, &bob);
    b.admin(&["room", "join", &room, "--via", &a.name(), "--as", "bob"]);
    a.joined(&room, &bob);
    b.joined(&room, &bob);
    let join = a
        .timeline(&room)
        .into_iter()
        .find(|v| v["type"] == "m.room.member" && v["state_key"] == bob.as_str())
        .unwrap();
    assert_eq!(
        join["content"]["join_authorised_via_users_server"],
        alice.as_str(),
        "{join}"
    );
    let sigs = join["signatures"].as_object().unwrap();
    assert!(
        sigs.contains_key(&a.name()) && sigs.contains_key(&b.name()),
        "{join}"
    );
    assert_eq!(
        a.admin(&["room", "state", &room]),
        b.admin(&["room", "state", &room])
    );
    // Messages flow after the restricted join.
    let m = b.admin(&["room", "send", &room, "in", "--as", "bob"]);
    a.wait_event(&room, &m);
}

/// Three servers in one room: each one's messages reach the other two; C goes down, A and B
/// talk on, C comes back and catches up from their persisted queues.
#[test]
fn three_servers_and_one_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = Server::start(&dir.path().join("a"), pa);
    let b = Server::start(&dir.path().join("b"), pb);
    let c = Server::start(&dir.path().join("c"), pc);
    a.admin(&["user", "create", "alice"]);
    let bob = b.admin(&["user", "create", "bob", "--auto-accept"]);
    let carol = c.admin(&["user", "create", "carol", "--auto-accept"]);
    let room = a.admin(&["room", "create", "--as", "alice"]);
    a.admin(&["room", "invite", &room, &bob, "--as", "alice"]);
    b.joined(&room, &bob);
    a.admin(&["room", "invite", &room, &carol, "--as", "alice"]);
    for s in [&a, &b, &c] {
        s.joined(&room, &carol);
        s.joined(&room, &bob);
    }

    let ma = a.admin(&["room", "send", &room, "from A", "--as", "alice"]);
    let mb = b.admin(&["room", "send", &room, "from B", "--as", "bob"]);
    let mc = c.admin(&["room", "send", &room, "from C", "--as", "carol"]);
    for s in [&a, &b, &c] {
        for m in [&ma, &mb, &mc] {
            s.wait_event(&room, m);
        }
    }

    c.kill();
    let ma2 = a.admin(&["room", "send", &room, "A while C was down", "--as", "alice"]);
    let mb2 = b.admin(&["room", "send", &room, "B while C was down", "--as", "bob"]);
    b.wait_event(&room, &ma2);
    a.wait_event(&room, &mb2);
    let c = Server::start(&dir.path().join("c"), pc);
    // C speaks: A and B see it is back and retry what they queued for it.
    let mc2 = c.admin(&["room", "send", &room, "C is back", "--as", "carol"]);
    for s in [&a, &b, &c] {
        for m in [&ma2, &mb2, &mc2] {
            s.wait_event(&room, m);
        }
    }
    let state = a.admin(&["room", "state", &room]);
    assert_eq!(b.admin(&["room", "state", &room]), state);
    assert_eq!(c.admin(&["room", "state", &room]), state);
    let mut sets: Vec<Vec<String>> = [&a, &b, &c]
        .iter()
        .map(|s| {
            let mut ids = s.timeline_event_ids(&room);
            ids.sort();
            ids
        })
        .collect();
    let first = sets.remove(0);
    for (other, s) in sets.into_iter().zip([&b, &c]) {
        assert_eq!(
            other,
            first,
            "the same events on every server:\n{}\n---\n{}",
            a.admin(&["room", "timeline", &room]),
            s.admin(&["room", "timeline", &room])
        );
    }
}

/// What B's outbound queue still holds for `dest`: the PDUs `dest` never acknowledged.
fn pending_for(b: &Server, dest: &str) -> std::collections::BTreeSet<String> {
    let db = b.db();
    let mut st = db
        .prepare("SELECT event_id FROM outbound WHERE destination = ?1 AND event_id IS NOT NULL")
        .unwrap();
    st.query_map([dest], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A is killed with SIGKILL three times while B streams messages to it, so with transactions
/// in flight. After each restart, every PDU B's queue saw acknowledged is in A's timeline
/// before anything else happens; in the end B's retries have brought the rest, each message
/// exactly once.
#[test]
fn receiver_killed_mid_stream_loses_and_duplicates_nothing() {
    const N: usize = 60;
    const ROUNDS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let mut a = Server::start(&dir.path().join("a"), pa);
    let b = Server::start(&dir.path().join("b"), pb);
    a.admin(&["user", "create", "alice"]);
    let bob = b.admin(&["user", "create", "bob", "--auto-accept"]);
    let room = a.admin(&["room", "create", "--as", "alice"]);
    a.admin(&["room", "invite", &room, &bob, "--as", "alice"]);
    b.joined(&room, &bob);
    let dest = a.name();

    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let sender = {
        let data = b.data.clone();
        let room = room.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                let out = Command::new(env!("CARGO_BIN_EXE_mxfed"))
                    .arg("admin")
                    .arg("--data-dir")
                    .arg(&data)
                    .args(["room", "send", &room, &format!("m{i}"), "--as", "bob"])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
                tx.send(id).unwrap();
            }
        })
    };
    let mut sent: Vec<String> = Vec::new();
    let (mut acknowledged_total, mut unanswered_total) = (0, 0);
    for round in 0..ROUNDS {
        // A few fresh messages reach A, then it dies while the stream goes on.
        for _ in 0..3 {
            sent.push(rx.recv().unwrap());
        }
        a.wait_event(&room, sent.last().unwrap());
        a.kill();
        // Every ID received so far was queued (persisted) by B before its send returned.
        sent.extend(rx.try_iter());
        let pending = pending_for(&b, &dest);
        let acknowledged: Vec<&String> = sent.iter().filter(|id| !pending.contains(*id)).collect();
        a = Server::start(&dir.path().join("a"), pa);
        let after_restart = a.timeline_event_ids(&room);
        for id in &acknowledged {
            assert!(
                after_restart.contains(id),
                "round {round}: acknowledged {id} lost"
            );
        }
        // Stored by A but not acknowledged (killed between its commit and its answer): B's
        // retries must not duplicate these.
        let unanswered = pending
            .iter()
            .filter(|id| after_restart.contains(*id))
            .count();
        acknowledged_total = acknowledged.len();
        unanswered_total += unanswered;
        // A speaks: B sees it is back and retries what it holds.
        let poke = a.admin(&[
            "room",
            "send",
            &room,
            &format!("back {round}"),
            "--as",
            "alice",
        ]);
        b.wait_event(&room, &poke);
    }
    sent.extend(rx.iter());
    sender.join().unwrap();
    assert_eq!(sent.len(), N);
    eprintln!(
        "crash: {ROUNDS} kills, {acknowledged_total} acknowledged before the last, \
         {unanswered_total} stored by A but still queued at B at a kill (retried, deduplicated)"
    );
    for id in &sent {
        a.wait_event(&room, id);
    }
    let ids = a.timeline_event_ids(&room);
    for id in &sent {
        assert_eq!(ids.iter().filter(|x| *x == id).count(), 1, "{id} once");
    }
    let bodies: Vec<String> = a
        .timeline(&room)
        .iter()
        .map(|v| body(v).to_owned())
        .collect();
    for i in 0..N {
        let m = format!("m{i}");
        assert_eq!(bodies.iter().filter(|b| **b == m).count(), 1, "{m} once");
    }
    assert_eq!(
        a.admin(&["room", "state", &room]),
        b.admin(&["room", "state", &room])
    );
}

/// An invite our auto-accepting user got but had not accepted when the server stopped is
/// accepted when it starts again (the acceptance ran only once, after the invite was answered,
/// so a stop in between left it pending for good). Here the user accepted nothing by themselves
/// when the invite came, and does after the restart.
#[test]
fn a_pending_auto_accept_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pb = free_port();
    let a = Server::start(&dir.path().join("a"), free_port());
    let b = Server::start(&dir.path().join("b"), pb);
    a.admin(&["user", "create", "alice"]);
    let bob = b.admin(&["user", "create", "bob"]);
    let room = a.admin(&["room", "create", "--as", "alice"]);
    a.admin(&["room", "invite", &room, &bob, "--as", "alice"]);
    assert!(b.admin(&["invites", "--as", "bob"]).contains(&room));
    b.kill();
    // Set while the server is down, as if the invite had come to an auto-accepting user just
    // before a stop.
    rusqlite::Connection::open(dir.path().join("b").join("mxfed.sqlite"))
        .unwrap()
        .execute("UPDATE users SET auto_accept = 1", [])
        .unwrap();
    let b = Server::start(&dir.path().join("b"), pb);
    b.joined(&room, &bob);
    a.joined(&room, &bob);
}

/// An invite withdrawn by whoever sent it reaches the invitee's server, which is not in the
/// room: it marks the invite `rescinded` (Synapse's out-of-band leave) and will not accept it.
#[test]
fn a_withdrawn_invite_is_marked_rescinded() {
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(&dir.path().join("a"), free_port());
    let b = Server::start(&dir.path().join("b"), free_port());
    a.admin(&["user", "create", "alice"]);
    let bob = b.admin(&["user", "create", "bob"]);
    let room = a.admin(&["room", "create", "--as", "alice"]);
    a.admin(&["room", "invite", &room, &bob, "--as", "alice"]);
    let status = |b: &Server| -> String {
        b.admin(&["invites", "--as", "bob"])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|i| i["room_id"] == room.as_str())
            .map(|i| i["status"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(status(&b), "pending");
    let leave = a.admin(&[
        "room",
        "state-set",
        &room,
        "m.room.member",
        &bob,
        r#"{"membership":"leave"}"#,
        "--as",
        "alice",
    ]);
    a.wait_event(&room, &leave);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status(&b) != "rescinded" {
        assert!(
            std::time::Instant::now() < deadline,
            "not withdrawn on B: {}",
            b.admin(&["invites", "--as", "bob"])
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let refused = b.admin_fails(&["invite", "accept", &room, "--as", "bob"]);
    assert!(refused.contains("withdrawn"), "{refused}");
}
