//! The admin API's `send_batch`: two `mxfed serve --dev` processes, a batch of messages from
//! two users of A lands in A's timeline in order and reaches B; a batch that names an unknown
//! user is refused before anything is sent. No sleeps: B is waited on with `room wait`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};

use common::free_port;
use common::process::{alice_and_bob, Server};

impl Server {
    /// A raw HTTP/1.1 POST to the admin API: (status, body).
    fn post(&self, path: &str, body: &str) -> (u16, String) {
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.data.join("admin.json")).unwrap())
                .unwrap();
        let token = std::fs::read_to_string(self.data.join("admin.token")).unwrap();
        let addr = info["url"].as_str().unwrap().trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            token.trim(),
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let status = answer[9..12].parse().unwrap();
        let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    fn bodies(&self, room: &str) -> Vec<String> {
        self.admin(&["room", "timeline", room])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| v["content"]["body"].as_str().map(str::to_owned))
            .collect()
    }
}
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn a_batch_is_stored_in_order_and_reaches_the_other_server() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = Server::start(&dir.path().join("a"), pa);
    let b = Server::start(&dir.path().join("b"), pb);
    a.admin(&["user", "create", "u0"]);
    a.admin(&["user", "create", "u1"]);
    let room = a.public_room("u0");
    a.admin(&[
        "room",
        "join",
        &room,
        "--via",
        &format!("localhost:{pa}"),
        "--as",
        "u1",
    ]);
    b.admin(&["user", "create", "watcher"]);
    b.admin(&[
        "room",
        "join",
        &room,
        "--via",
        &format!("localhost:{pa}"),
        "--as",
        "watcher",
    ]);

    let texts: Vec<String> = (0..7).map(|i| format!("batch message {i}")).collect();
    let messages: Vec<serde_json::Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"as": format!("u{}", i % 2), "text": t}))
        .collect();
    let path = format!("/admin/v1/rooms/{}/send_batch", enc(&room));
    let (status, body) = a.post(
        &path,
        &serde_json::json!({ "messages": messages }).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&body).unwrap()["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), texts.len());
    let on_a: Vec<String> = a
        .bodies(&room)
        .into_iter()
        .filter(|t| t.starts_with("batch"))
        .collect();
    assert_eq!(on_a, texts);
    b.wait_event(&room, ids.last().unwrap());
    let on_b: Vec<String> = b
        .bodies(&room)
        .into_iter()
        .filter(|t| t.starts_with("batch"))
        .collect();
    assert_eq!(on_b, texts);

    // An unknown sender anywhere in the batch: refused before anything is built.
    let bad = serde_json::json!({"messages": [{"as": "u0", "text": "never"}, {"as": "nobody", "text": "never"}]});
    let (status, _) = a.post(&path, &bad.to_string());
    assert_eq!(status, 404);
    assert!(!a.bodies(&room).iter().any(|t| t == "never"));
}

/// Many admin sends at once, one message per request and batches mixed: the requests that wait
/// for a commit together are stored in one commit (`local`). Every request is answered with
/// its own event IDs, every message is in A's timeline exactly once and in each sender's order,
/// and reaches B exactly once.
#[test]
fn concurrent_sends_are_each_stored_answered_and_delivered_once() {
    const SINGLE_SENDERS: usize = 4;
    const SINGLES: usize = 15;
    const BATCH_SENDERS: usize = 2;
    const BATCHES: usize = 3;
    const BATCH: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = std::sync::Arc::new(Server::start(&dir.path().join("a"), pa));
    let b = Server::start(&dir.path().join("b"), pb);
    let senders = SINGLE_SENDERS + BATCH_SENDERS;
    for i in 0..senders {
        a.admin(&["user", "create", &format!("u{i}")]);
    }
    let room = a.public_room("u0");
    let via = format!("localhost:{pa}");
    for i in 1..senders {
        a.admin(&[
            "room",
            "join",
            &room,
            "--via",
            &via,
            "--as",
            &format!("u{i}"),
        ]);
    }
    b.admin(&["user", "create", "watcher"]);
    b.admin(&["room", "join", &room, "--via", &via, "--as", "watcher"]);

    let threads: Vec<_> = (0..senders)
        .map(|i| {
            let (a, room) = (a.clone(), room.clone());
            std::thread::spawn(move || {
                let user = format!("u{i}");
                let mut texts = Vec::new();
                let mut ids = Vec::new();
                let requests = if i < SINGLE_SENDERS { SINGLES } else { BATCHES };
                for r in 0..requests {
                    if i < SINGLE_SENDERS {
                        let text = format!("concurrent {user} {r}");
                        let body = serde_json::json!({"as": user, "text": text});
                        let (status, answer) = a.post(
                            &format!("/admin/v1/rooms/{}/send", enc(&room)),
                            &body.to_string(),
                        );
                        assert_eq!(status, 200, "{answer}");
                        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
                        ids.push(v["event_id"].as_str().unwrap().to_owned());
                        texts.push(text);
                    } else {
                        let batch: Vec<String> = (0..BATCH)
                            .map(|k| format!("concurrent {user} {r}.{k}"))
                            .collect();
                        let messages: Vec<serde_json::Value> = batch
                            .iter()
                            .map(|t| serde_json::json!({"as": user, "text": t}))
                            .collect();
                        let (status, answer) = a.post(
                            &format!("/admin/v1/rooms/{}/send_batch", enc(&room)),
                            &serde_json::json!({ "messages": messages }).to_string(),
                        );
                        assert_eq!(status, 200, "{answer}");
                        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
                        let got = v["event_ids"].as_array().unwrap();
                        assert_eq!(got.len(), BATCH, "{answer}");
                        ids.extend(got.iter().map(|x| x.as_str().unwrap().to_owned()));
                        texts.extend(batch);
                    }
                }
                (texts, ids)
            })
        })
        .collect();
    let per_sender: Vec<(Vec<String>, Vec<String>)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();

    let all_ids: std::collections::BTreeSet<&String> =
        per_sender.iter().flat_map(|(_, ids)| ids).collect();
    let total = SINGLE_SENDERS * SINGLES + BATCH_SENDERS * BATCHES * BATCH;
    assert_eq!(all_ids.len(), total, "every message has its own event ID");

    for (_, ids) in &per_sender {
        b.wait_event(&room, ids.last().unwrap());
    }
    for server in [&*a, &b] {
        let bodies: Vec<String> = server
            .bodies(&room)
            .into_iter()
            .filter(|t| t.starts_with("concurrent"))
            .collect();
        assert_eq!(bodies.len(), total, "every message stored exactly once");
        for (texts, _) in &per_sender {
            let mine: Vec<&String> = bodies.iter().filter(|t| texts.contains(t)).collect();
            assert_eq!(
                mine,
                texts.iter().collect::<Vec<_>>(),
                "each sender's messages once, in its order"
            );
        }
    }
}

/// An outbound row whose event was never stored (the process died between the two commits of a
/// group, `local`) is dropped at start-up; a row whose event is stored stays queued.
#[test]
fn restart_drops_queued_pdus_whose_event_was_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let pa = free_port();
    let a = Server::start(&dir.path().join("a"), pa);
    a.admin(&["user", "create", "u0"]);
    let room = a.admin(&["room", "create", "--as", "u0"]);
    let data = a.data.clone();
    a.kill();
    let db_path = data.join("mxfed.sqlite");
    {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        let stored: String = db
            .query_row(
                "SELECT event_id FROM events WHERE room_id = ?1 ORDER BY stream DESC LIMIT 1",
                [&room],
                |r| r.get(0),
            )
            .unwrap();
        for id in [stored.as_str(), "$never-stored"] {
            db.execute(
                "INSERT INTO outbound (destination, kind, event_id, room_id, json) VALUES ('unreachable.invalid', 'pdu', ?1, ?2, '{}')",
                [id, &room],
            )
            .unwrap();
        }
    }
    let a = Server::start(&data, pa);
    let db = rusqlite::Connection::open(&db_path).unwrap();
    let mut st = db
        .prepare("SELECT event_id FROM outbound WHERE destination = 'unreachable.invalid'")
        .unwrap();
    let left: Vec<String> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0], "$never-stored");
    drop(a);
}

/// Messages (the group commit) and a state event (the one-by-one path) queued for a server that
/// is down survive the sender's own crash: their outbound rows name the stored events and hold
/// no copy of their JSON; after the restart the queue is rebuilt from the events and delivered,
/// each event once, when the destination is back.
#[test]
fn queued_events_survive_the_senders_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, bob) = alice_and_bob(dir.path());
    let (pa, pb) = (a.port, b.port);
    let room = a.admin(&["room", "create", "--as", "alice"]);
    a.admin(&["room", "invite", &room, &bob, "--as", "alice"]);
    b.admin(&["room", "wait", &room, "--joined", &bob, "--timeout", "60"]);
    let dest = b.name();
    b.kill();

    let mut queued: Vec<String> = (0..3)
        .map(|i| {
            a.admin(&[
                "room",
                "send",
                &room,
                &format!("queued {i}"),
                "--as",
                "alice",
            ])
        })
        .collect();
    queued.push(a.admin(&[
        "room",
        "state-set",
        &room,
        "m.room.topic",
        "",
        r#"{"topic":"while B was down"}"#,
        "--as",
        "alice",
    ]));
    let rows: Vec<(String, String)> = {
        let db = a.db();
        let mut st = db
            .prepare("SELECT event_id, json FROM outbound WHERE destination = ?1 ORDER BY id")
            .unwrap();
        st.query_map([&dest], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for id in &queued {
        assert!(rows.iter().any(|(e, _)| e == id), "{id} queued: {rows:?}");
    }
    assert!(rows.iter().all(|(_, json)| json.is_empty()), "{rows:?}");

    a.kill();
    let a = Server::start(&dir.path().join("a"), pa);
    let b = Server::start(&dir.path().join("b"), pb);
    // B speaks to A, which tells A's queue that B is back.
    let poke = b.admin(&["room", "send", &room, "back", "--as", "bob"]);
    a.wait_event(&room, &poke);
    for id in &queued {
        b.wait_event(&room, id);
    }
    let timeline = b.admin(&["room", "timeline", &room]);
    for i in 0..3 {
        assert_eq!(
            timeline.matches(&format!("\"queued {i}\"")).count(),
            1,
            "{timeline}"
        );
    }
    let topic = queued.last().unwrap();
    assert!(
        b.admin(&["room", "state", &room]).contains(topic.as_str()),
        "the topic set while B was down is B's current topic"
    );
}
