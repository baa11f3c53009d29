//! The test harness shared by the auth-rule and state-resolution tests: a room whose events are
//! built by real senders with real keys and fed through the full receipt pipeline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Mutex;

use mxfed_core::canonical::{parse_object, Int, Object, ParseOptions};
use mxfed_core::event::{build_event, hash_and_sign_event, EventRef, EventTemplate, StateMap};
use mxfed_core::keys::SigningKey;
use mxfed_core::pdu::check_pdu_object;
use mxfed_core::room::{Room, RoomVerdict};
use mxfed_core::server_keys::{build_server_keys, KeyRing, ServerKeys};
use mxfed_core::{RoomVersion, Timestamp};

pub static HIT: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

pub fn obj(s: &str) -> Object {
    parse_object(s.as_bytes(), &ParseOptions::STRICT).unwrap()
}

pub fn key(server: &str) -> SigningKey {
    let b = server
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    SigningKey::from_seed("k", &[b; 32]).unwrap()
}

pub const A: &str = "@alice:a.example";
pub const B: &str = "@bob:b.example";
pub const C: &str = "@carol:a.example";

/// A room under test: events built by real senders with real keys, fed to the pipeline.
pub struct T {
    pub v: &'static RoomVersion,
    pub room: Room,
    pub ring: KeyRing,
    pub room_id: String,
    pub ts: u64,
    pub n: u32,
}

impl T {
    /// A room created by alice, with power levels (alice 100) and the given join rule.
    pub fn new(v: &'static RoomVersion, join_rule: &str) -> T {
        // v12 creators must not be listed in users (their power is infinite anyway).
        let users = if v.privileged_creators {
            "{}".to_owned()
        } else {
            format!(r#"{{"{A}":100}}"#)
        };
        T::with_power_levels(v, join_rule, &format!(r#"{{"users":{users}}}"#))
    }

    pub fn with_power_levels(v: &'static RoomVersion, join_rule: &str, pl: &str) -> T {
        T::with_create_content(v, join_rule, pl, "")
    }

    /// As [`T::with_power_levels`], with `extra` (`"key":value,…`) added to the create content.
    pub fn with_create_content(
        v: &'static RoomVersion,
        join_rule: &str,
        pl: &str,
        extra: &str,
    ) -> T {
        let mut ring = KeyRing::new();
        for s in ["a.example", "b.example", "c.example"] {
            let r = build_server_keys(s, &[key(s)], &[], Int::new(1 << 50).unwrap()).unwrap();
            ring.add(&ServerKeys::from_response(&r).unwrap());
        }
        let mut t = T {
            v,
            room: Room::new(v),
            ring,
            room_id: "!room:a.example".into(),
            ts: 1000,
            n: 0,
        };
        let create = t.build(
            A,
            "m.room.create",
            Some(""),
            &format!(
                r#"{{"creator":"{A}","room_version":"{}"{}{extra}}}"#,
                v.id,
                if extra.is_empty() { "" } else { "," }
            ),
        );
        t.room_id = create.0.clone();
        assert_eq!(t.receive(create.1), RoomVerdict::Accepted);
        t.ok(A, "m.room.member", Some(A), r#"{"membership":"join"}"#);
        t.ok(A, "m.room.power_levels", Some(""), pl);
        t.ok(
            A,
            "m.room.join_rules",
            Some(""),
            &format!(r#"{{"join_rule":"{join_rule}"}}"#),
        );
        t
    }

    pub fn users(&self, extra: &str) -> String {
        if self.v.privileged_creators {
            format!("{{{extra}}}")
        } else if extra.is_empty() {
            format!(r#"{{"{A}":100}}"#)
        } else {
            format!(r#"{{"{A}":100,{extra}}}"#)
        }
    }

    pub fn state_refs(&self) -> StateMap {
        self.room
            .current_state()
            .into_iter()
            .map(|(k, id)| {
                let depth = self.room.event(&id).map_or(0, |(p, _)| p.depth());
                (
                    k,
                    EventRef {
                        event_id: id,
                        depth,
                        sha256: None,
                    },
                )
            })
            .collect()
    }

    pub fn prev(&self) -> Vec<EventRef> {
        self.room
            .forward_extremities()
            .iter()
            .map(|id| EventRef {
                event_id: id.clone(),
                depth: self.room.event(id).map_or(0, |(p, _)| p.depth()),
                sha256: Some("AAAA".into()),
            })
            .collect()
    }

    /// The current state's events whose (type, state key) `keep` takes, as auth events are
    /// made of them.
    #[allow(dead_code)] // not every test file that shares this module uses it
    pub fn state_pdus(
        &self,
        keep: impl Fn(&(String, String)) -> bool,
    ) -> Vec<mxfed_core::auth::Pdu> {
        self.room
            .current_state()
            .iter()
            .filter(|(k, _)| keep(k))
            .filter_map(|(_, id)| self.room.event(id).map(|(p, _)| p.clone()))
            .collect()
    }

    /// Builds and signs an event from the current state; returns (room ID for a create, event).
    pub fn build(
        &mut self,
        sender: &str,
        kind: &str,
        sk: Option<&str>,
        content: &str,
    ) -> (String, Object) {
        self.ts += 1;
        self.n += 1;
        let server = sender.split_once(':').unwrap().1;
        let is_create = kind == "m.room.create";
        let t = EventTemplate {
            room_id: if is_create && self.v.room_id_from_create_event {
                None
            } else {
                Some(self.room_id.clone())
            },
            event_type: kind.into(),
            sender: sender.into(),
            state_key: sk.map(str::to_owned),
            content: obj(content),
            redacts: None,
        };
        let prev = if is_create { Vec::new() } else { self.prev() };
        let b = build_event(
            self.v,
            server,
            &t,
            &prev,
            &self.state_refs(),
            Timestamp(self.ts),
            &key(server),
            Some(&format!("e{}", self.n)),
        )
        .unwrap();
        (b.room_id, b.pdu)
    }

    /// The forward extremities and state right now, to build a fork from.
    pub fn snapshot(&self) -> (Vec<EventRef>, StateMap) {
        (self.prev(), self.state_refs())
    }

    /// Builds an event on top of a snapshot, receives it, and returns its ID and verdict.
    pub fn send_at(
        &mut self,
        at: &(Vec<EventRef>, StateMap),
        sender: &str,
        kind: &str,
        sk: Option<&str>,
        content: &str,
    ) -> (String, RoomVerdict) {
        self.ts += 1;
        self.n += 1;
        let server = sender.split_once(':').unwrap().1;
        let t = EventTemplate {
            room_id: Some(self.room_id.clone()),
            event_type: kind.into(),
            sender: sender.into(),
            state_key: sk.map(str::to_owned),
            content: obj(content),
            redacts: None,
        };
        let b = build_event(
            self.v,
            server,
            &t,
            &at.0,
            &at.1,
            Timestamp(self.ts),
            &key(server),
            Some(&format!("f{}", self.n)),
        )
        .unwrap();
        let verdict = self.receive(b.pdu);
        (b.event_id, verdict)
    }

    /// A snapshot after one event of a branch.
    pub fn after(&self, id: &str) -> (Vec<EventRef>, StateMap) {
        let (p, _) = self.room.event(id).unwrap();
        let prev = vec![EventRef {
            event_id: id.to_owned(),
            depth: p.depth(),
            sha256: Some("AAAA".into()),
        }];
        let state = self
            .room
            .state_after(id)
            .unwrap()
            .iter()
            .map(|(k, eid)| {
                let depth = self.room.event(eid).map_or(0, |(p, _)| p.depth());
                (
                    k.clone(),
                    EventRef {
                        event_id: eid.clone(),
                        depth,
                        sha256: None,
                    },
                )
            })
            .collect();
        (prev, state)
    }

    /// Re-signs an event after the test edited it (as a malicious server would).
    pub fn resign(&mut self, mut ev: Object) -> Object {
        if !self.v.room_id_from_create_event && ev.contains_key("event_id") {
            // v1-2 IDs are chosen by the sender: a new event needs a new one.
            self.n += 1;
            let server = ev
                .get_str("sender")
                .unwrap()
                .split_once(':')
                .unwrap()
                .1
                .to_owned();
            ev.insert("event_id", format!("$r{}:{server}", self.n));
        }
        let sender = ev.get_str("sender").unwrap().to_owned();
        let server = sender.split_once(':').unwrap().1.to_owned();
        ev.remove("signatures");
        ev.remove("hashes");
        hash_and_sign_event(&mut ev, self.v, &server, &key(&server)).unwrap();
        ev
    }

    pub fn receive_resigned(&mut self, ev: Object) -> RoomVerdict {
        let ev = self.resign(ev);
        self.receive(ev)
    }

    pub fn receive(&mut self, ev: Object) -> RoomVerdict {
        let check = check_pdu_object(ev, self.v, &self.ring);
        let verdict = self.room.receive(&check);
        if let Some(code) = verdict.code() {
            HIT.lock().unwrap().insert(code);
        }
        verdict
    }

    pub fn send(
        &mut self,
        sender: &str,
        kind: &str,
        sk: Option<&str>,
        content: &str,
    ) -> RoomVerdict {
        let (_, ev) = self.build(sender, kind, sk, content);
        self.receive(ev)
    }

    pub fn ok(&mut self, sender: &str, kind: &str, sk: Option<&str>, content: &str) {
        let v = self.send(sender, kind, sk, content);
        assert_eq!(
            v,
            RoomVerdict::Accepted,
            "v{} {sender} {kind} {sk:?} {content}",
            self.v.id
        );
    }

    pub fn rejected(
        &mut self,
        code: &str,
        sender: &str,
        kind: &str,
        sk: Option<&str>,
        content: &str,
    ) {
        let v = self.send(sender, kind, sk, content);
        assert_eq!(
            v,
            RoomVerdict::Rejected { code: leak(code) },
            "v{} {sender} {kind} {sk:?} {content}",
            self.v.id
        );
    }

    pub fn join(&mut self, user: &str) {
        self.ok(
            user,
            "m.room.member",
            Some(user),
            r#"{"membership":"join"}"#,
        );
    }
}

pub fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}
