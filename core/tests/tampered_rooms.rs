//! Tampered variants of real Synapse rooms (`tests/vectors/synapse/tampered`, made by hand with
//! `tests/synapse/gen_tampered.py`): an evil server sent forged PDUs over federation to a real
//! Synapse 1.163.2, and Synapse's verdict on each is recorded: one room per room version, 1–12
//! (894 tampered PDUs and 264 setup events in all). Replaying each room through mxfed must give
//! the same verdict for every event and end in Synapse's current state, except where
//! [`EXPECTED_DIFFERENCES`] and [`EXPECTED_STATE_DIFFERENCES`] say otherwise (each entry explains
//! why). [`MXFED_REASONS`] pins the reason code mxfed gives for each case, and
//! [`MXFED_REASONS_BY_VERSION`] where it depends on the room version.
//!
//! Mapping: Synapse's `dropped` (never persisted: bad signatures at `/send`, a PDU that failed to
//! parse, or processing that raised) is our `rejected`; `redacted` (content hash mismatch, the
//! pruned copy kept) is our `redacted`; `rejected` and `soft_failed` map to themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use mxfed_core::auth::{check_state_independent, AuthError, KnownEvent, Pdu};
use mxfed_core::canonical::{parse_object, ParseOptions};
use mxfed_core::pdu::check_pdu;
use mxfed_core::room::replay;
use mxfed_core::server_keys::{KeyRing, ServerKeys};
use mxfed_core::RoomVersion;

fn dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/synapse/tampered")
}

fn json(path: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(path)).unwrap()).unwrap()
}

fn ring() -> KeyRing {
    let mut ring = KeyRing::new();
    for port in [8448, 8449, 8450] {
        let b = std::fs::read(dir().join(format!("keys/localhost_{port}.json"))).unwrap();
        ring.add(
            &ServerKeys::from_response(&parse_object(&b, &ParseOptions::STRICT).unwrap()).unwrap(),
        );
    }
    ring
}

struct Line {
    case: String,
    event_id: String,
    pdu: String,
    synapse: String,
    synapse_reason: String,
}

fn lines(file: &str) -> Vec<Line> {
    std::fs::read_to_string(dir().join(file))
        .unwrap()
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            Line {
                case: j["case"].as_str().unwrap().to_owned(),
                event_id: j["event_id"].as_str().unwrap().to_owned(),
                pdu: serde_json::to_string(&j["pdu"]).unwrap(),
                synapse: j["synapse"]["verdict"].as_str().unwrap().to_owned(),
                synapse_reason: j["synapse"]["reason"].as_str().unwrap_or("").to_owned(),
            }
        })
        .collect()
}

/// The rooms: (file, room version, room ID, side room file).
fn rooms() -> Vec<(String, String, String, String)> {
    let index = json("rooms.json");
    index["rooms"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(file, info)| {
            (
                file.clone(),
                info["room_version"].as_str().unwrap().to_owned(),
                info["room_id"].as_str().unwrap().to_owned(),
                info["side_room"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Where mxfed's verdict differs from Synapse's: (case, room versions, mxfed's verdict, why).
/// An empty version list means every version.
const EXPECTED_DIFFERENCES: &[(&str, &[&str], &str, &str)] = &[(
    // Synapse soft-failed it because it *arrived* after the ban: its prev_events are older
    // than the room's forward extremities, and the current state bans eve. The replay has no
    // arrival order: it orders events causally with depth as the tie-break, and this event's
    // depth (the depth its prev_events give it) is below the ban's, so the replay receives it
    // before the ban, when eve is still joined. Accepting it is what Synapse itself does when
    // the events arrive in that order. `banned_user_fork` is the same event with a depth above
    // the ban's, and there both soft-fail it.
    "banned_user_fork_low_depth",
    &[],
    "accepted",
    "arrival order: the replay receives it before the ban",
)];

/// Final-state entries that differ from Synapse's, as consequences of the known differences
/// above: (room versions, (type, state_key) pairs, why).
type StateDifference = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);
const EXPECTED_STATE_DIFFERENCES: &[StateDifference] = &[
    (
        V7_TO_9,
        &[("m.room.member", "@kim:localhost:8450")],
        KNOCKS_RESOLVED_AWAY,
    ),
    (
        V10_TO_12,
        &[
            ("m.room.member", "@kim:localhost:8450"),
            ("m.room.member", "@kai:localhost:8450"),
        ],
        KNOCKS_RESOLVED_AWAY,
    ),
];

/// Why the knocks are not in the replay's final state. The replay accepts
/// `banned_user_fork_low_depth` (above), which Synapse soft-failed, so that fork message stays a
/// forward extremity and the replay's current state is the resolution of the fork's state
/// (from before the join rule changes, with no knocks) and the main branch's. The knock member
/// events are in only one of the two, so they are conflicted, and state resolution re-checks
/// them against the resolved join rule, the last one (`restricted`), which allows no knock: they
/// fail and drop out. That is the spec's algorithm applied to the replay's extremities; Synapse,
/// whose only extremity is the main branch, keeps them. The restricted joins (@trent, @ria)
/// pass the same re-check and stay.
const KNOCKS_RESOLVED_AWAY: &str = "the accepted low-depth fork message resolves the knocks away";

const V1_TO_2: &[&str] = &["1", "2"];
const V1_TO_4: &[&str] = &["1", "2", "3", "4"];
const V1_TO_5: &[&str] = &["1", "2", "3", "4", "5"];
const V1_TO_6: &[&str] = &["1", "2", "3", "4", "5", "6"];
const V1_TO_7: &[&str] = &["1", "2", "3", "4", "5", "6", "7"];
const V1_TO_9: &[&str] = &["1", "2", "3", "4", "5", "6", "7", "8", "9"];
const V7_TO_9: &[&str] = &["7", "8", "9"];
const V10_TO_12: &[&str] = &["10", "11", "12"];
const V11_TO_12: &[&str] = &["11", "12"];

/// Version-specific verdicts, before [`MXFED_REASONS`]: (case, room versions, verdict, code).
/// Synapse gives the same verdicts (see the README of the vectors).
const MXFED_REASONS_BY_VERSION: &[(&str, &[&str], &str, &str)] = &[
    // Integer power levels are required from v10; before, "0" is read as 0 (Synapse and mxfed).
    ("power_levels_string_level", V1_TO_9, "accepted", ""),
    // Key validity (valid_until_ts against origin_server_ts) is enforced from v5.
    ("key_not_valid_at_ts", V1_TO_4, "accepted", ""),
    // v1-v2 authorise redactions: the redact level, or the same server as the redacted event.
    (
        "redaction_without_power",
        V1_TO_2,
        "rejected",
        "auth_redaction_insufficient_power",
    ),
    // v1-v5: m.room.aliases whose state_key is the sender's server is allowed with no power
    // check; from v6 it is ordinary state and needs state_default.
    ("aliases_own_server", V1_TO_5, "accepted", ""),
    // Knocking exists from v7; before, "knock" is an unknown membership.
    (
        "knock_invite_only",
        V1_TO_6,
        "rejected",
        "auth_unknown_membership",
    ),
    // Canonical JSON's integer range is enforced from v6.
    ("content_integer_out_of_range", V1_TO_5, "accepted", ""),
    // `notifications` levels are checked against the sender's level from v6.
    (
        "power_levels_notifications_too_high",
        V1_TO_5,
        "accepted",
        "",
    ),
    // The knock join rule and knocking exist from v7, knock_restricted from v10, restricted
    // joins from v8; before, the join rule is an unknown value that lets no one in.
    (
        "knock_allowed",
        V1_TO_6,
        "rejected",
        "auth_unknown_membership",
    ),
    (
        "knock_restricted_knock",
        V1_TO_6,
        "rejected",
        "auth_unknown_membership",
    ),
    (
        "knock_restricted_knock",
        V7_TO_9,
        "rejected",
        "auth_knock_not_allowed",
    ),
    (
        "restricted_join_authorised",
        V1_TO_7,
        "rejected",
        "auth_join_not_allowed",
    ),
    (
        "restricted_join_authoriser_banned",
        V1_TO_7,
        "rejected",
        "auth_join_not_allowed",
    ),
    (
        "restricted_join_not_signed_by_authoriser",
        V1_TO_7,
        "rejected",
        "auth_join_not_allowed",
    ),
    (
        "restricted_join_changed_content",
        V1_TO_7,
        "rejected",
        "auth_join_not_allowed",
    ),
    // v8's redaction drops join_authorised_via_users_server from the member content, so the
    // redacted copy cites the authoriser's member event without a reason (v9 keeps the key).
    (
        "restricted_join_changed_content",
        &["8"],
        "rejected",
        "auth_events_unexpected",
    ),
    // Over 255 bytes (within 255 code points) drops the PDU from v11; before, it is kept as
    // rejected (Synapse: EventSizeError, unpersistable only from v11).
    (
        "state_key_over_255_bytes",
        V11_TO_12,
        "rejected",
        "pdu_field_too_long",
    ),
];

/// mxfed's verdict and reason code for every tampered case, in every version where the case
/// exists, unless [`MXFED_REASONS_BY_VERSION`] says otherwise.
const MXFED_REASONS: &[(&str, &str, &str)] = &[
    ("control_message", "accepted", ""),
    (
        "forged_sender_other_server",
        "rejected",
        "signature_missing",
    ),
    (
        "forged_sender_power_levels",
        "rejected",
        "signature_missing",
    ),
    ("forged_sender_bob", "rejected", "signature_missing"),
    ("sender_never_joined", "rejected", "auth_not_joined"),
    (
        "sender_never_joined_cites_other_member",
        "rejected",
        "auth_events_unexpected",
    ),
    (
        "missing_power_topic",
        "rejected",
        "auth_send_insufficient_power",
    ),
    (
        "missing_power_power_levels",
        "rejected",
        "auth_send_insufficient_power",
    ),
    (
        "missing_power_raise_self",
        "rejected",
        "auth_power_levels_too_high",
    ),
    (
        "missing_power_demote_admin",
        "rejected",
        "auth_power_levels_too_high",
    ),
    // v12 only. Synapse drops it (see the README): _check_power_levels raises SynapseError.
    (
        "missing_power_creator_in_users",
        "rejected",
        "auth_power_levels_creator_in_users",
    ),
    (
        "missing_power_ban",
        "rejected",
        "auth_ban_insufficient_power",
    ),
    (
        "missing_power_kick_equal",
        "rejected",
        "auth_kick_insufficient_power",
    ),
    (
        "state_key_other_user",
        "rejected",
        "auth_state_key_not_sender",
    ),
    // Synapse drops it, as above.
    (
        "power_levels_string_level",
        "rejected",
        "auth_power_levels_invalid",
    ),
    ("join_invite_only", "rejected", "auth_join_not_allowed"),
    ("join_for_other_user", "rejected", "auth_join_not_self"),
    (
        "auth_events_unexpected_type",
        "rejected",
        "auth_events_unexpected",
    ),
    ("auth_events_duplicate", "rejected", "auth_events_duplicate"),
    ("auth_events_superseded_member", "accepted", ""),
    (
        "auth_events_stale_power_levels",
        "rejected",
        "auth_send_insufficient_power",
    ),
    ("auth_events_without_power_levels", "accepted", ""),
    (
        "auth_events_without_power_levels_topic",
        "rejected",
        "auth_send_insufficient_power",
    ),
    // state_default is 50 even with no power levels event (older spec text said 0; that was a
    // spec bug, fixed in 2023). Synapse and mxfed agree. See the README.
    (
        "auth_events_without_power_levels_moderator_topic",
        "rejected",
        "auth_send_insufficient_power",
    ),
    (
        "auth_events_without_create",
        "rejected",
        "auth_events_no_create",
    ),
    (
        "auth_events_with_create_v12",
        "rejected",
        "pdu_create_in_auth_events",
    ),
    // Synapse asks the origin for the auth chain, gets a 404 and drops the event.
    ("auth_events_unknown", "rejected", "auth_events_missing"),
    ("auth_events_rejected", "rejected", "auth_events_rejected"),
    // A replay holds one room, so the side room's events are unknown to it: "missing", where
    // Synapse, which has both rooms, says "in another room". `auth_events_from_another_room`
    // below checks that mxfed says so too when it is given those events.
    ("auth_events_other_room", "rejected", "auth_events_missing"),
    (
        "auth_events_one_from_other_room",
        "rejected",
        "auth_events_missing",
    ),
    ("banned_user_message", "rejected", "auth_not_joined"),
    ("banned_user_stale_member", "rejected", "auth_not_joined"),
    ("banned_user_rejoin", "rejected", "auth_join_banned"),
    ("banned_user_fork", "soft_failed", "auth_not_joined"),
    ("banned_user_fork_low_depth", "accepted", ""),
    (
        "stale_power_fork_topic",
        "soft_failed",
        "auth_send_insufficient_power",
    ),
    ("changed_content_message", "redacted", ""),
    ("changed_content_topic", "redacted", ""),
    ("changed_extra_top_level_key", "redacted", ""),
    ("changed_origin_server_ts", "rejected", "signature_invalid"),
    ("unsigned_added", "accepted", ""),
    ("changed_content_power_levels", "redacted", ""),
    ("signatures_stripped", "rejected", "signature_missing"),
    // `signatures` is a required PDU field: mxfed rejects the format, Synapse reads a missing
    // `signatures` as {} and then finds no signature.
    ("signatures_key_removed", "rejected", "pdu_missing_field"),
    (
        "signature_unknown_key_id",
        "rejected",
        "signature_no_usable_key",
    ),
    ("signature_invalid", "rejected", "signature_invalid"),
    ("signature_extra_unknown_key", "accepted", ""),
    ("signature_extra_other_server", "accepted", ""),
    ("key_not_valid_at_ts", "rejected", "signature_no_usable_key"),
    ("prev_event_rejected", "accepted", ""),
    ("redaction_without_power", "accepted", ""),
    ("control_message_end", "accepted", ""),
    (
        "aliases_own_server",
        "rejected",
        "auth_send_insufficient_power",
    ),
    ("knock_invite_only", "rejected", "auth_knock_not_allowed"),
    // Synapse drops it while parsing ("JSON integer out of range"); mxfed rejects the format.
    (
        "content_integer_out_of_range",
        "rejected",
        "json_integer_out_of_range",
    ),
    // v1-v2 only: the event ID's server must sign too.
    ("event_id_other_server", "rejected", "signature_missing"),
    (
        "power_levels_notifications_too_high",
        "rejected",
        "auth_power_levels_too_high",
    ),
    ("join_rules_knock", "accepted", ""),
    ("knock_allowed", "accepted", ""),
    ("join_rules_knock_restricted", "accepted", ""),
    ("knock_restricted_knock", "accepted", ""),
    ("join_rules_restricted", "accepted", ""),
    ("restricted_join_authorised", "accepted", ""),
    // eve is banned, so she cannot authorise a join.
    (
        "restricted_join_authoriser_banned",
        "rejected",
        "auth_join_bad_authoriser",
    ),
    // Synapse drops it: the authorising server's signature is missing.
    (
        "restricted_join_not_signed_by_authoriser",
        "rejected",
        "signature_missing",
    ),
    ("restricted_join_changed_content", "redacted", ""),
    // Synapse drops the next four: _check_power_levels raises on them (a SynapseError, or a
    // TypeError for an `events`/`notifications` that is not an object before v10).
    (
        "power_levels_state_key_invalid_users",
        "rejected",
        "auth_power_levels_invalid",
    ),
    ("power_levels_state_key_odd_user_ids", "accepted", ""),
    (
        "power_levels_events_not_object",
        "rejected",
        "auth_power_levels_invalid",
    ),
    // v6+ only (before, neither reads `notifications`).
    (
        "power_levels_notifications_not_object",
        "rejected",
        "auth_power_levels_invalid",
    ),
    // Base64 of 31 bytes: a hash that does not match, so the redacted copy is kept.
    ("hash_wrong_length", "redacted", ""),
    // `unsigned` is reduced to an integer `age` before the size and number rules.
    ("unsigned_too_large", "accepted", ""),
    ("unsigned_float", "accepted", ""),
    (
        "state_key_over_255_bytes",
        "rejected",
        "auth_field_too_long",
    ),
    // v1-10 only: its prev event was kept (as rejected).
    ("prev_event_over_255_bytes", "accepted", ""),
    ("join_rules_not_string", "accepted", ""),
    // A join_rule that is not a string is no join rule: even a member cannot join again.
    (
        "join_under_non_string_join_rule",
        "rejected",
        "auth_join_not_allowed",
    ),
    ("join_rules_restricted_again", "accepted", ""),
];

/// mxfed's verdict and reason for every line of a room (in file order) and its final state.
type Verdicts = Vec<(String, String)>;
type State = Vec<(String, String, String)>;

fn mxfed_replay(file: &str, rv: &str) -> (Verdicts, State) {
    let ls = lines(file);
    let v = RoomVersion::get(rv).unwrap();
    // Any input order will do: the replay orders causally. Reverse the file (Synapse's order).
    let bytes: Vec<&[u8]> = ls.iter().rev().map(|l| l.pdu.as_bytes()).collect();
    let (verdicts, state) = replay(&bytes, v, &ring());
    assert_eq!(verdicts.len(), ls.len());
    let mut by_id: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut anonymous = Vec::new();
    for o in &verdicts {
        let kind = o.get_str("verdict").unwrap().to_owned();
        let reason = o.get_str("reason").unwrap_or("").to_owned();
        match o.get_str("event_id") {
            Some(id) => assert!(by_id.insert(id.to_owned(), (kind, reason)).is_none()),
            None => anonymous.push((kind, reason)),
        }
    }
    // PDUs rejected before an event ID could be computed come first, in input order.
    let mut anonymous = anonymous.into_iter();
    let mut out: Verdicts = ls
        .iter()
        .rev()
        .map(|l| {
            by_id
                .remove(&l.event_id)
                .or_else(|| anonymous.next())
                .unwrap()
        })
        .collect();
    out.reverse();
    let state = state.into_iter().map(|((t, sk), id)| (t, sk, id)).collect();
    (out, state)
}

fn synapse_state(room: &str) -> State {
    let states = json("current_state.json");
    let mut want: State = states[room]
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
    want
}

#[test]
fn tampered_rooms_match_synapse() {
    let rooms = rooms();
    let versions: BTreeSet<&str> = rooms.iter().map(|r| r.1.as_str()).collect();
    let all: BTreeSet<&str> = RoomVersion::ALL.iter().map(|v| v.id).collect();
    assert_eq!(versions, all, "one room per room version");
    assert_eq!(rooms.len(), all.len());
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut seen_cases = BTreeSet::new();
    for (file, rv, room, _) in &rooms {
        let (ours, state) = mxfed_replay(file, rv);
        let ls = lines(file);
        let mut synapse_counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (l, (kind, reason)) in ls.iter().zip(&ours) {
            *synapse_counts.entry(l.synapse.as_str()).or_default() += 1;
            let want = match l.synapse.as_str() {
                "dropped" => "rejected",
                other => other,
            };
            let want = EXPECTED_DIFFERENCES
                .iter()
                .find(|d| d.0 == l.case && (d.1.is_empty() || d.1.contains(&rv.as_str())))
                .map_or(want, |d| d.2);
            report.push_str(&format!(
                "v{rv} {:<48} synapse {:<11} mxfed {:<11} {reason}\n",
                l.case, l.synapse, kind
            ));
            if kind != want {
                failures.push(format!(
                    "v{rv} {} ({}): Synapse {} ({}), mxfed {kind} ({reason})",
                    l.case, l.event_id, l.synapse, l.synapse_reason
                ));
            }
            if l.case == "setup" {
                continue;
            }
            seen_cases.insert(l.case.clone());
            let expected = MXFED_REASONS_BY_VERSION
                .iter()
                .find(|r| r.0 == l.case && r.1.contains(&rv.as_str()))
                .map(|r| (r.0, r.2, r.3))
                .or_else(|| MXFED_REASONS.iter().find(|r| r.0 == l.case).copied());
            match expected {
                Some((_, k, r)) if k == kind && r == reason => {}
                Some((_, k, r)) => failures.push(format!(
                    "v{rv} {}: mxfed {kind} ({reason}), the table says {k} ({r})",
                    l.case
                )),
                None => failures.push(format!("v{rv} {}: not in MXFED_REASONS", l.case)),
            }
            // What Synapse dropped for its signatures, mxfed rejects for its signatures (or,
            // for a PDU without `signatures`, for its format).
            if l.synapse == "dropped"
                && l.synapse_reason.contains("unable to verify signature")
                && !(reason.starts_with("signature") || reason == "pdu_missing_field")
            {
                failures.push(format!(
                    "v{rv} {}: Synapse dropped it for its signatures, mxfed says {reason}",
                    l.case
                ));
            }
        }
        // Every kind of verdict occurs in every room.
        for kind in ["accepted", "rejected", "soft_failed", "redacted", "dropped"] {
            assert!(
                synapse_counts.get(kind).is_some_and(|n| *n > 0),
                "v{rv}: {kind}"
            );
        }
        // The final state equals Synapse's, except for the entries listed as known differences,
        // which must differ (so that the list is updated when mxfed changes).
        let skip: Vec<(&str, &str)> = EXPECTED_STATE_DIFFERENCES
            .iter()
            .filter(|d| d.0.contains(&rv.as_str()))
            .flat_map(|d| d.1.iter().copied())
            .collect();
        let split = |s: State| -> (State, State) {
            s.into_iter()
                .partition(|(t, k, _)| !skip.contains(&(t.as_str(), k.as_str())))
        };
        let (ours_kept, ours_skipped) = split(state);
        let (want_kept, want_skipped) = split(synapse_state(room));
        if ours_kept != want_kept {
            failures.push(format!(
                "v{rv}: final state differs:\n ours {ours_kept:?}\n want {want_kept:?}"
            ));
        }
        for (t, k) in &skip {
            let find = |s: &State| {
                s.iter()
                    .find(|e| e.0 == *t && e.1 == *k)
                    .map(|e| e.2.clone())
            };
            let (ours, want) = (find(&ours_skipped), find(&want_skipped));
            if ours == want {
                failures.push(format!(
                    "v{rv}: ({t}, {k}) now equals Synapse's ({ours:?}): remove it from \
                     EXPECTED_STATE_DIFFERENCES"
                ));
            }
        }
    }
    for (case, _, _) in MXFED_REASONS {
        assert!(seen_cases.contains(*case), "{case} is in no room");
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The side rooms (where the foreign auth events come from) are untampered: every event is
/// accepted and the replay ends in Synapse's state.
#[test]
fn side_rooms_replay_to_synapse_state() {
    for (_, rv, _, side) in rooms() {
        let ls = lines(&side);
        assert!(ls.iter().all(|l| l.synapse == "accepted"));
        let (ours, state) = mxfed_replay(&side, &rv);
        assert!(ours.iter().all(|(k, _)| k == "accepted"), "v{rv}: {ours:?}");
        let room = serde_json::from_str::<serde_json::Value>(&ls[1].pdu).unwrap()["room_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(state, synapse_state(&room), "v{rv} side room");
    }
}

/// Given the auth events it cites from the side room, mxfed rejects an event for citing events
/// of another room, as Synapse does ("found event … in the state which is in room …").
#[test]
fn auth_events_from_another_room() {
    let ring = ring();
    for (file, rv, room, side) in rooms() {
        let v = RoomVersion::get(&rv).unwrap();
        let parse = |l: &Line| {
            let c = check_pdu(l.pdu.as_bytes(), v, &ring);
            Pdu::new(c.event.unwrap(), v).unwrap()
        };
        let main: Vec<Line> = lines(&file);
        let all: BTreeMap<String, Pdu> = main
            .iter()
            .chain(lines(&side).iter())
            .filter(|l| l.synapse != "dropped")
            .map(|l| (l.event_id.clone(), parse(l)))
            .collect();
        // v12: the create event's ID is the room ID's; before: the create event in the room.
        let create = all
            .values()
            .find(|p| {
                p.kind() == "m.room.create"
                    && (p.room_id() == Some(room.as_str()) || p.event_id[1..] == room[1..])
            })
            .unwrap();
        let mut checked = 0;
        for l in main.iter().filter(|l| l.case.contains("other_room")) {
            assert_eq!(l.synapse, "rejected");
            assert!(
                l.synapse_reason.contains("which is in room"),
                "{}",
                l.synapse_reason
            );
            let ev = parse(l);
            let auth: Vec<KnownEvent<'_>> = ev
                .auth_event_ids()
                .into_iter()
                .map(|id| KnownEvent {
                    pdu: &all[id],
                    rejected: false,
                })
                .collect();
            let create = KnownEvent {
                pdu: create,
                rejected: false,
            };
            assert_eq!(
                check_state_independent(&ev, &auth, Some(create)),
                Err(AuthError::AuthEventWrongRoom),
                "v{rv} {}",
                l.case
            );
            checked += 1;
        }
        assert_eq!(checked, 2, "v{rv}");
    }
}

/// `Room::check` gives every event of the tampered rooms (rejected, soft-failed, redacted and
/// accepted ones) the verdict `Room::receive` then gives it, and leaves the room as it was.
#[test]
fn check_gives_receives_verdict_and_changes_nothing() {
    use mxfed_core::room::{causal_order, Room};
    let ring = ring();
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (file, rv, _, _) in rooms() {
        let v = RoomVersion::get(&rv).unwrap();
        let checks: Vec<_> = lines(&file)
            .iter()
            .map(|l| check_pdu(l.pdu.as_bytes(), v, &ring))
            .collect();
        let with_event: Vec<usize> = (0..checks.len())
            .filter(|&i| {
                checks[i]
                    .event
                    .as_ref()
                    .is_some_and(|e| Pdu::new(e.clone(), v).is_ok())
            })
            .collect();
        let events: Vec<Pdu> = with_event
            .iter()
            .map(|&i| Pdu::new(checks[i].event.clone().unwrap(), v).unwrap())
            .collect();
        let mut room = Room::new(v);
        let order = (0..checks.len())
            .filter(|i| !with_event.contains(i))
            .chain(causal_order(&events).into_iter().map(|k| with_event[k]));
        for i in order {
            let (state, extremities) = (room.current_state(), room.forward_extremities().clone());
            let checked = room.check(&checks[i]);
            assert_eq!(room.current_state(), state, "{file}");
            assert_eq!(room.forward_extremities(), &extremities, "{file}");
            let received = room.receive(&checks[i]);
            assert_eq!(checked, received, "{file} line {i}");
            // Checked again once taken in: the verdict of an event the room has.
            let again = room.check(&checks[i]);
            assert_eq!(again, room.receive(&checks[i]), "{file} line {i}");
            *kinds.entry(received.as_str()).or_default() += 1;
        }
    }
    // Every kind of verdict came up.
    for kind in ["accepted", "rejected", "soft_failed", "redacted"] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "{kind}: {kinds:?}"
        );
    }
}
