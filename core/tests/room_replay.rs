//! Real rooms from Synapse, in every room version: replaying their PDUs (shuffled) through
//! full validation accepts every event Synapse accepted and ends in Synapse's current state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use mxfed_core::canonical::{parse_object, ParseOptions};
use mxfed_core::room::replay;
use mxfed_core::server_keys::{KeyRing, ServerKeys};
use mxfed_core::RoomVersion;

fn vectors() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/synapse")
}

fn ring() -> KeyRing {
    let mut ring = KeyRing::new();
    for port in [8448, 8449, 8450] {
        let b = std::fs::read(vectors().join(format!("keys/localhost_{port}.json"))).unwrap();
        ring.add(
            &ServerKeys::from_response(&parse_object(&b, &ParseOptions::STRICT).unwrap()).unwrap(),
        );
    }
    ring
}

#[test]
fn every_synapse_room_replays_to_synapse_state() {
    let states: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("current_state.json")).unwrap(),
    )
    .unwrap();
    let rooms = synapse_rooms();
    assert_eq!(rooms.len(), 17);
    let ring = ring();
    for ((room, rv), mut pdus) in rooms {
        // Any input order: reverse it, the replay orders causally.
        pdus.reverse();
        let v = RoomVersion::get(&rv).unwrap();
        let bytes: Vec<&[u8]> = pdus.iter().map(|p| p.as_bytes()).collect();
        let (verdicts, state) = replay(&bytes, v, &ring);
        assert_eq!(verdicts.len(), pdus.len());
        for verdict in &verdicts {
            let kind = verdict.get_str("verdict").unwrap();
            assert!(
                kind == "accepted" || kind == "redacted",
                "v{rv} {room}: {verdict}"
            );
        }
        let mut want: Vec<(String, String, String)> = states[&room]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["type"].as_str().unwrap().to_owned(),
                    s["state_key"].as_str().unwrap().to_owned(),
                    s["event_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        want.sort();
        let got: Vec<(String, String, String)> =
            state.into_iter().map(|((t, sk), id)| (t, sk, id)).collect();
        assert_eq!(got, want, "v{rv} {room}");
    }
}

/// Batch verification reaches exactly the verdicts of one-by-one checking, on Synapse's real
/// PDUs and on tampered copies of them (changed content, changed signatures, stripped
/// signatures, unknown keys), wherever the bad ones sit in the batch.
#[test]
fn batch_verification_matches_single_checks() {
    let text = std::fs::read_to_string(vectors().join("pdus.jsonl")).unwrap();
    let ring = ring();
    let mut by_version: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut pdu = j["pdu"].clone();
        let pdus = by_version
            .entry(j["room_version"].as_str().unwrap().to_owned())
            .or_default();
        pdus.push(serde_json::to_string(&pdu).unwrap());
        match n % 5 {
            0 => pdu["content"]["tampered"] = serde_json::json!(true),
            1 => pdu["origin_server_ts"] = serde_json::json!(1),
            2 => {
                let sigs = pdu["signatures"].as_object_mut().unwrap();
                let server = sigs.keys().next().unwrap().clone();
                let key = sigs[&server]
                    .as_object()
                    .unwrap()
                    .keys()
                    .next()
                    .unwrap()
                    .clone();
                let s = sigs[&server][&key].as_str().unwrap().to_owned();
                // Flip one character of the signature.
                let first = if s.starts_with('A') { "B" } else { "A" };
                let flipped = format!("{first}{}", s.get(1..).unwrap());
                sigs.get_mut(&server).unwrap()[&key] = serde_json::json!(flipped);
            }
            3 => pdu["signatures"] = serde_json::json!({}),
            _ => {
                let sigs = pdu["signatures"].as_object_mut().unwrap();
                let server = sigs.keys().next().unwrap().clone();
                let entry = sigs[&server].as_object().unwrap().clone();
                let renamed: serde_json::Map<_, _> = entry
                    .into_iter()
                    .map(|(_, v)| ("ed25519:unknown".to_owned(), v))
                    .collect();
                sigs.insert(server, serde_json::Value::Object(renamed));
            }
        }
        pdus.push(serde_json::to_string(&pdu).unwrap());
    }
    let mut counts = BTreeMap::new();
    for (rv, pdus) in by_version {
        let v = RoomVersion::get(&rv).unwrap();
        let bytes: Vec<&[u8]> = pdus.iter().map(|p| p.as_bytes()).collect();
        let batch = mxfed_core::pdu::check_pdus(&bytes, v, &ring);
        for (b, single) in bytes.iter().zip(&batch) {
            let one = mxfed_core::pdu::check_pdu(b, v, &ring);
            assert_eq!(&one, single, "v{rv}");
            *counts.entry(one.verdict.as_str()).or_insert(0) += 1;
        }
    }
    // The corpus and its tampered copies exercise every outcome.
    assert!(
        counts["accepted"] > 300 && counts["rejected"] > 300 && counts["redacted"] > 50,
        "{counts:?}"
    );
}

/// The Synapse corpus's PDUs (`pdus.jsonl`) as JSON text, by (room ID, room version), in file
/// order.
fn synapse_rooms() -> BTreeMap<(String, String), Vec<String>> {
    let text = std::fs::read_to_string(vectors().join("pdus.jsonl")).unwrap();
    let mut rooms: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        rooms
            .entry((
                j["meta"]["room_id"].as_str().unwrap().to_owned(),
                j["room_version"].as_str().unwrap().to_owned(),
            ))
            .or_default()
            .push(serde_json::to_string(&j["pdu"]).unwrap());
    }
    rooms
}

/// The host's path into a room (`PduCheck::take_pdu` + `Room::receive_checked`, which reuses the
/// ID the check computed) gives `Room::receive`'s verdicts and state on every Synapse room, and
/// an event that changes no state shares the state map of the event before it.
#[test]
fn receive_checked_matches_receive_and_shares_state() {
    use mxfed_core::room::{causal_order, Room};
    let ring = ring();
    let rooms = synapse_rooms();
    let mut shared = 0;
    for ((room_id, rv), pdus) in rooms {
        let v = RoomVersion::get(&rv).unwrap();
        let checks: Vec<_> = pdus
            .iter()
            .map(|p| mxfed_core::pdu::check_pdu(p.as_bytes(), v, &ring))
            .collect();
        let events: Vec<_> = checks
            .iter()
            .map(|c| mxfed_core::auth::Pdu::new(c.event.clone().unwrap(), v).unwrap())
            .collect();
        let (mut by_receive, mut by_checked) = (Room::new(v), Room::new(v));
        for i in causal_order(&events) {
            let mut check = checks[i].clone();
            let want = by_receive.receive(&check);
            let pdu = check.take_pdu(v).unwrap();
            assert_eq!(pdu.event_id, events[i].event_id, "v{rv} {room_id}");
            assert_eq!(by_checked.receive_checked(pdu, &check.verdict), want);
            let id = &events[i].event_id;
            let prevs = events[i].prev_event_ids();
            if let ([prev], None) = (prevs.as_slice(), events[i].state_key()) {
                let (before, after) = (
                    by_checked.state_after(prev).unwrap(),
                    by_checked.state_after(id).unwrap(),
                );
                assert!(std::ptr::eq(before, after), "v{rv} {id}");
                shared += 1;
            }
        }
        assert_eq!(by_checked.current_state(), by_receive.current_state());
        // Building on the auth-type entries only picks the same auth events as on the whole
        // state: a message, a join and a kick.
        let sender = events[0].sender().to_owned();
        let key = mxfed_core::keys::SigningKey::from_seed_base64(
            "1",
            "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1",
        )
        .unwrap();
        for (ty, sk, content) in [
            (
                "m.room.message",
                None,
                r#"{"body":"hi","msgtype":"m.text"}"#,
            ),
            ("m.room.member", Some("@new:x"), r#"{"membership":"join"}"#),
            (
                "m.room.member",
                Some(sender.as_str()),
                r#"{"membership":"leave"}"#,
            ),
        ] {
            let t = mxfed_core::event::EventTemplate {
                room_id: events[0]
                    .room_id()
                    .map(str::to_owned)
                    .or(Some(room_id.clone())),
                event_type: ty.into(),
                sender: sk
                    .filter(|s| s.starts_with("@new"))
                    .unwrap_or(&sender)
                    .into(),
                state_key: sk.map(str::to_owned),
                content: parse_object(content.as_bytes(), &ParseOptions::STRICT).unwrap(),
                redacts: None,
            };
            let build = |(prev, state): (Vec<_>, _)| {
                mxfed_core::event::build_event(
                    v,
                    "x",
                    &t,
                    &prev,
                    &state,
                    mxfed_core::Timestamp::from_i64(1),
                    &key,
                    Some("l"),
                )
                .unwrap()
                .pdu
            };
            assert_eq!(
                build(by_checked.build_on_for(&t)),
                build(by_checked.build_on()),
                "v{rv} {room_id} {ty}"
            );
        }
        assert_eq!(
            by_checked.forward_extremities(),
            by_receive.forward_extremities()
        );
    }
    assert!(shared > 10, "{shared} messages");
}

/// A room with compact history ([`Room::set_compact_history`]) answers every Synapse room as a
/// room that keeps every body: verdicts, current state, forward extremities, the state before
/// and after each event, soft-failures, redaction targets, history visibility, and the walks
/// (`/backfill`, `/get_missing_events`, `/event_auth`) as event IDs; and it did drop bodies.
#[test]
fn compact_history_answers_as_the_full_room() {
    use mxfed_core::room::Room;
    let ring = ring();
    let rooms = synapse_rooms();
    let servers = [
        "localhost:8448",
        "localhost:8449",
        "localhost:8450",
        "other",
    ];
    let (mut dropped, mut redactions) = (0, 0);
    for ((room_id, rv), mut pdus) in rooms {
        pdus.reverse();
        let v = RoomVersion::get(&rv).unwrap();
        let bytes: Vec<&[u8]> = pdus.iter().map(|p| p.as_bytes()).collect();
        let (mut full, mut compact) = (Room::new(v), Room::new(v));
        compact.set_compact_history(true);
        let want = full.receive_pdus(&bytes, &ring);
        assert_eq!(compact.receive_pdus(&bytes, &ring), want, "v{rv} {room_id}");
        assert_eq!(compact.current_state(), full.current_state());
        assert_eq!(compact.forward_extremities(), full.forward_extremities());
        let ids: Vec<&str> = want.iter().filter_map(|o| o.get_str("event_id")).collect();
        let ctx = |id: &str| format!("v{rv} {room_id} {id}");
        for id in &ids {
            let id = *id;
            assert_eq!(compact.contains(id), full.contains(id), "{}", ctx(id));
            if !full.contains(id) {
                continue;
            }
            if !compact.has_body(id) {
                dropped += 1;
                assert!(compact.event(id).is_none());
                let (pdu, _) = full.event(id).unwrap();
                assert!(pdu.state_key().is_none() && pdu.kind() != "m.room.redaction");
                assert!(!full.forward_extremities().contains(id), "{}", ctx(id));
            } else {
                assert_eq!(compact.event(id), full.event(id), "{}", ctx(id));
                assert_eq!(compact.event_ref(id), full.event_ref(id), "{}", ctx(id));
            }
            // Without a body there is no reference hash to cite (room versions 1 and 2).
            if !v.event_refs_with_hashes {
                assert_eq!(compact.event_ref(id), full.event_ref(id), "{}", ctx(id));
            }
            assert_eq!(compact.state_after(id), full.state_after(id), "{}", ctx(id));
            assert_eq!(
                compact.state_before_event(id),
                full.state_before_event(id),
                "{}",
                ctx(id)
            );
            assert_eq!(compact.is_soft_failed(id), full.is_soft_failed(id));
            let target = full.redaction_target(id);
            redactions += usize::from(target.is_some_and(|t| !compact.has_body(t)));
            assert_eq!(compact.redaction_target(id), target, "{}", ctx(id));
            for s in servers {
                assert_eq!(compact.server_view(id, s), full.server_view(id, s));
            }
            let ids_of = |pdus: Vec<&mxfed_core::auth::Pdu>| -> Vec<String> {
                pdus.into_iter().map(|p| p.event_id.clone()).collect()
            };
            let owned =
                |ids: Vec<&str>| -> Vec<String> { ids.into_iter().map(str::to_owned).collect() };
            assert_eq!(
                owned(compact.backfill_ids(&[id], 20)),
                ids_of(full.backfill(&[id], 20)),
                "{}",
                ctx(id)
            );
            assert_eq!(
                full.backfill_ids(&[id], 20),
                compact.backfill_ids(&[id], 20)
            );
            assert_eq!(
                owned(compact.missing_event_ids(&[], &[id], 20, 0)),
                ids_of(full.missing_events(&[], &[id], 20, 0)),
                "{}",
                ctx(id)
            );
            assert_eq!(
                owned(compact.auth_chain_ids([id])),
                ids_of(full.auth_chain([id])),
                "{}",
                ctx(id)
            );
        }
    }
    // The corpus has messages deep in history, and redactions of some of them.
    assert!(dropped > 100 && redactions > 0, "{dropped} {redactions}");
}

/// In room version 12 the create event is in every other event's auth chain though no event
/// lists it (Synapse's `auth_event_ids()` adds it): the chains a server serves (`/event_auth`,
/// `send_join`, `/state`) carry it. Earlier versions list it and get it the usual way.
#[test]
fn auth_chains_carry_the_create_event_in_every_version() {
    let ring = ring();
    let mut checked = 0;
    for ((room, rv), pdus) in synapse_rooms() {
        let v = RoomVersion::get(&rv).unwrap();
        let mut r = mxfed_core::room::Room::new(v);
        let bytes: Vec<&[u8]> = pdus.iter().map(|p| p.as_bytes()).collect();
        r.receive_pdus(&bytes, &ring);
        let create = r
            .current_state()
            .get(&("m.room.create".to_owned(), String::new()))
            .cloned()
            .unwrap();
        for p in &pdus {
            let pdu = parse_object(p.as_bytes(), &ParseOptions::LEGACY).unwrap();
            let id = mxfed_core::event::event_id(&pdu, v).unwrap();
            let chain = r.auth_chain_ids([id.as_str()]);
            if id == create {
                assert!(chain.is_empty(), "v{rv} {room}: the create event's chain");
            } else {
                assert!(chain.contains(&create.as_str()), "v{rv} {room}: {id}");
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "{checked}");
}
