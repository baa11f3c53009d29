//! The admin API's `send_batch`: two `mxfed serve --dev` processes, a batch of messages from
//! two users of A lands in A's timeline in order and reaches B; a batch that names an unknown
//! user is refused before anything is sent. No sleeps: B is waited on with `room wait`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};

use common::free_port;
use common::process::Server;

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
    let room = a.admin(&["room", "create", "--as", "u0"]);
    a.admin(&[
        "room",
        "state-set",
        &room,
        "m.room.join_rules",
        "",
        r#"{"join_rule":"public"}"#,
        "--as",
        "u0",
    ]);
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
    b.admin(&[
        "room",
        "wait",
        &room,
        "--event",
        ids.last().unwrap(),
        "--timeout",
        "60",
    ]);
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
