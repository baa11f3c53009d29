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
    let text = std::fs::read_to_string(vectors().join("pdus.jsonl")).unwrap();
    let states: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("current_state.json")).unwrap(),
    )
    .unwrap();
    let mut rooms: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        let room = j["meta"]["room_id"].as_str().unwrap().to_owned();
        rooms
            .entry((room, j["room_version"].as_str().unwrap().to_owned()))
            .or_default()
            .push(serde_json::to_string(&j["pdu"]).unwrap());
    }
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
