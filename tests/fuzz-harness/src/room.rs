//! The room target: a room built event by event from fuzz choices — any sender, type, state key
//! and (mostly well-typed) content, prev events from anywhere in the room's history (forks, so
//! state resolution), auth events from any earlier state — each event hashed and signed by its
//! sender's server and then taken in as a host does (`check_pdu_object`, then `Room::receive`,
//! `add_outlier` or `receive_with_state`). Nothing may panic, and the same events received in
//! the same order by a second room give the same verdicts and the same current state.

use mxfed_core::canonical::{Int, Object, Value};
use mxfed_core::event::{build_event, hash_and_sign_event, EventRef, EventTemplate, StateMap};
use mxfed_core::pdu::{check_pdu_object, PduCheck};
use mxfed_core::room::{Room, RoomVerdict};
use mxfed_core::{RoomVersion, Timestamp};

use crate::{ring, server_key, Choices};

const USERS: [&str; 5] = ["@alice:a", "@bob:a", "@carol:b", "@dave:b", "@eve:c"];
const TYPES: [&str; 12] = [
    "m.room.member",
    "m.room.member",
    "m.room.member",
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.message",
    "m.room.redaction",
    "m.room.create",
    "m.room.third_party_invite",
    "m.room.server_acl",
    "m.room.history_visibility",
    "m.room.name",
];
const MEMBERSHIPS: [&str; 7] = ["join", "leave", "invite", "ban", "knock", "", "x"];
const JOIN_RULES: [&str; 7] = [
    "public",
    "invite",
    "knock",
    "restricted",
    "knock_restricted",
    "private",
    "x",
];
const PL_FIELDS: [&str; 9] = [
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "kick",
    "redact",
    "invite",
    "events",
    "notifications",
];

/// How a step's event is taken in.
#[derive(Clone, Copy)]
enum Intake {
    Receive,
    Outlier,
    WithState,
    Backfilled,
}

struct Step {
    check: PduCheck,
    intake: Intake,
    /// For [`Intake::WithState`]: the event whose state after is given.
    state_of: Option<String>,
}

/// One room from `data` (see the module's documentation).
pub fn room(data: &[u8]) {
    let _ = run(data);
}

/// [`room`], returning the verdict of each event taken in.
pub fn run(data: &[u8]) -> Vec<RoomVerdict> {
    let mut c = Choices::new(data);
    let v = RoomVersion::ALL[c.below(RoomVersion::ALL.len())];
    let keys = ring(&["a", "b"]);
    let compact = c.below(2) == 0;
    let mut room = Room::new(v);
    room.set_compact_history(compact);
    let mut steps: Vec<Step> = Vec::new();
    let mut verdicts: Vec<RoomVerdict> = Vec::new();
    let mut room_id = String::from("!r:a");
    let mut known: Vec<String> = Vec::new();
    for n in 0..24u64 {
        if n > 0 && c.is_empty() {
            break;
        }
        let Some((pdu, intake, state_of)) = next_event(&mut c, &room, v, &mut room_id, &known, n)
        else {
            continue;
        };
        let check = check_pdu_object(pdu, v, &keys);
        if let Some(id) = &check.event_id {
            known.push(id.clone());
        }
        let verdict = take_in(&mut room, &check, intake, state_of.as_deref());
        verdicts.push(verdict);
        steps.push(Step {
            check,
            intake,
            state_of,
        });
        if c.below(4) == 0 {
            let _ = room.build_on();
            let _ = mxfed_core::acl::room_allows(&room, "b");
        }
    }
    let state = room.current_state();
    queries(&mut c, &room, &known);
    // The batch path the CLI, wasm and Python hosts use: checks, causal order, the pipeline.
    let bytes: Vec<Vec<u8>> = steps
        .iter()
        .filter_map(|s| {
            s.check
                .event
                .as_ref()
                .map(|e| e.to_canonical_string().into_bytes())
        })
        .collect();
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let _ = mxfed_core::room::replay(&refs, v, &keys);
    // Determinism: the same events, the same way, in the same order.
    let mut again = Room::new(v);
    again.set_compact_history(compact);
    for (i, s) in steps.iter().enumerate() {
        let verdict = take_in(&mut again, &s.check, s.intake, s.state_of.as_deref());
        assert_eq!(verdict, verdicts[i], "verdict of step {i}");
    }
    assert_eq!(again.current_state(), state);
    verdicts
}

/// What a host asks a room for peers (`/get_missing_events`, `/backfill`, `/event_auth`,
/// `/state`, serving an event, `make_join`), with IDs and limits from the input.
fn queries(c: &mut Choices<'_>, room: &Room, known: &[String]) {
    let id = |c: &mut Choices<'_>| -> String {
        match known.get(c.below(known.len() + 2)) {
            Some(id) => id.clone(),
            None => "$unknown".to_owned(),
        }
    };
    for _ in 0..4 {
        let (a, b) = (id(c), id(c));
        let limit = c.below(30);
        let min_depth = i64::from(c.byte()) - 64;
        let _ = room.missing_events(&[&a], &[&b], limit, min_depth);
        let _ = room.backfill(&[&b], limit);
        let _ = room.backfill_points(&[&a, &b]);
        let _ = room.unknown_auth_events(&[&a]);
        let _ = room.auth_chain_ids([a.as_str(), b.as_str()]);
        if let Some(before) = room.state_before_event(&a) {
            let _ = room.state_events(&before);
        }
        let _ = room.server_view(&a, c.pick(&["a", "b", "c"]));
        let _ = room.redaction_target(&a);
    }
    let _ = room.joined_servers();
    let _ = room.members_by(|_| true);
    let _ = room.prejoin_state(c.pick(&USERS));
    let joined = c.below(3);
    let _ = room.restricted_join(
        c.pick(&USERS),
        |u| u.ends_with(":a"),
        |_| [None, Some(false), Some(true)][joined],
    );
}

fn take_in(
    room: &mut Room,
    check: &PduCheck,
    intake: Intake,
    state_of: Option<&str>,
) -> RoomVerdict {
    match intake {
        Intake::Receive => room.receive(check),
        Intake::Outlier => room.add_outlier(check),
        Intake::Backfilled => room.add_backfilled(check),
        Intake::WithState => {
            let given = state_of
                .and_then(|id| room.state_after(id).cloned())
                .unwrap_or_default();
            room.receive_with_state(check, given)
        }
    }
}

/// The next event: its PDU (hashed and signed), how it is taken in, and for
/// [`Intake::WithState`] whose state is given with it.
fn next_event(
    c: &mut Choices<'_>,
    room: &Room,
    v: &'static RoomVersion,
    room_id: &mut String,
    known: &[String],
    n: u64,
) -> Option<(Object, Intake, Option<String>)> {
    let first = n == 0;
    // A room people are in first: alice creates it and joins, sets power levels and join
    // rules; bob and carol (of the second server) join. Then anything.
    let (ty, sender) = match n {
        0 => ("m.room.create", USERS[0]),
        1 => ("m.room.member", USERS[0]),
        2 => ("m.room.power_levels", USERS[0]),
        3 => ("m.room.join_rules", USERS[0]),
        4 => ("m.room.member", USERS[1]),
        5 => ("m.room.member", USERS[2]),
        _ => (
            c.pick(&TYPES),
            if c.below(16) == 0 {
                USERS[4]
            } else {
                USERS[c.below(4)]
            },
        ),
    };
    let server = sender.rsplit(':').next().unwrap_or("a");
    let state_key = match ty {
        "m.room.member" if n < 6 || c.below(2) == 0 => Some(sender.to_owned()),
        "m.room.member" => Some(c.pick(&USERS).to_owned()),
        "m.room.message" | "m.room.redaction" => c.below(8).eq(&0).then(String::new),
        "m.room.third_party_invite" => Some(c.pick(&["tok", ""]).to_owned()),
        _ => Some(String::new()),
    };
    let content = content(c, ty, v, sender, known, n);
    let redacts = (ty == "m.room.redaction")
        .then(|| known.get(c.below(known.len() + 1)).cloned())
        .flatten();
    let template = EventTemplate {
        room_id: (!(first && v.room_id_from_create_event)).then(|| room_id.clone()),
        event_type: ty.to_owned(),
        sender: sender.to_owned(),
        state_key,
        content,
        redacts,
    };
    let (mut prev, mut state) = room.build_on();
    // Forks: prev events from anywhere; auth events from an earlier state.
    let free = n >= 6;
    if free && c.below(3) == 0 {
        prev = (0..=c.below(3))
            .filter_map(|_| room.event_ref(&known[c.below(known.len())]))
            .collect();
    }
    if free && c.below(4) == 0 {
        let at = &known[c.below(known.len())];
        if let Some(s) = room.state_after(at) {
            state = s
                .iter()
                .filter_map(|(k, id)| Some((k.clone(), room.event_ref(id)?)))
                .collect::<StateMap>();
        }
    }
    if free && c.below(16) == 0 {
        prev.push(EventRef {
            event_id: unknown_id(v),
            depth: i64::from(c.byte()),
            sha256: v.event_refs_with_hashes.then(|| "AAAA".to_owned()),
        });
    }
    let key = server_key(if free && c.below(16) == 0 {
        "b"
    } else {
        server
    });
    let local = format!("e{n}");
    let built = build_event(
        v,
        server,
        &template,
        &prev,
        &state,
        Timestamp(1_000 + n),
        &key,
        Some(&local),
    )
    .ok()?;
    if first {
        room_id.clone_from(&built.room_id);
    }
    let mut pdu = built.pdu;
    if free && c.below(12) == 0 {
        mutate_top_level(c, &mut pdu);
        let _ = hash_and_sign_event(&mut pdu, v, server, &key);
    }
    let (intake, state_of) = match if free { c.below(12) } else { 11 } {
        0 => (Intake::Outlier, None),
        2 => (Intake::Backfilled, None),
        1 => (
            Intake::WithState,
            known.get(c.below(known.len() + 1)).cloned(),
        ),
        _ => (Intake::Receive, None),
    };
    Some((pdu, intake, state_of))
}

fn unknown_id(v: &RoomVersion) -> String {
    if v.event_refs_with_hashes {
        "$missing:b".to_owned()
    } else {
        "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()
    }
}

/// A value of the kinds power levels and other contents get wrong: in range, at the edges, out
/// of range, strings that look like numbers, and other types.
fn number(c: &mut Choices<'_>) -> Value {
    match c.below(12) {
        0 => Value::Int(Int::saturating(0)),
        1 => Value::Int(Int::saturating(50)),
        2 => Value::Int(Int::saturating(100)),
        3 => Value::Int(Int::saturating(-1)),
        4 => Value::Int(Int::saturating(i64::from(c.byte()))),
        5 => Value::Int(Int::saturating((1 << 53) - 1)),
        6 => Value::Int(Int::saturating(-(1 << 53) + 1)),
        7 => Value::from(c.pick(&["50", "100", "-7", " 1", "1e2", "0x10", ""])),
        8 => Value::Bool(c.below(2) == 0),
        9 => Value::Null,
        10 => Value::Object(Object::new()),
        _ => Value::Array(vec![Value::Int(Int::saturating(1))]),
    }
}

fn content(
    c: &mut Choices<'_>,
    ty: &str,
    v: &RoomVersion,
    sender: &str,
    known: &[String],
    n: u64,
) -> Object {
    let mut o = Object::new();
    match ty {
        "m.room.create" => {
            if !v.room_id_from_create_event || c.below(4) == 0 {
                let creator = if c.below(16) == 0 {
                    c.pick(&USERS)
                } else {
                    USERS[0]
                };
                o.insert("creator", creator);
            }
            if c.below(3) == 0 {
                o.insert("room_version", c.pick(&["10", "11", "12", "x"]));
            }
            if c.below(4) == 0 {
                let extra: Vec<Value> = (0..c.below(3))
                    .map(|_| Value::from(c.pick(&USERS)))
                    .collect();
                o.insert("additional_creators", Value::Array(extra));
            }
            if c.below(16) == 0 {
                o.insert("m.federate", c.below(2) == 0);
            }
        }
        "m.room.member" => {
            let m = if n < 6 { "join" } else { c.pick(&MEMBERSHIPS) };
            o.insert("membership", m);
            if c.below(5) == 0 {
                o.insert("join_authorised_via_users_server", c.pick(&USERS));
            }
            if c.below(8) == 0 {
                let mut signed = Object::new();
                signed.insert("token", "tok");
                signed.insert("mxid", c.pick(&USERS));
                signed.insert("signatures", Object::new());
                let mut tpi = Object::new();
                tpi.insert("display_name", "x");
                tpi.insert("signed", signed);
                o.insert("third_party_invite", tpi);
            }
            if c.below(6) == 0 {
                o.insert("displayname", number(c));
            }
        }
        "m.room.power_levels" => {
            for _ in 0..c.below(6) {
                let field = c.pick(&PL_FIELDS);
                let value = if matches!(field, "events" | "notifications") && c.below(2) == 0 {
                    let mut m = Object::new();
                    m.insert(
                        c.pick(&["m.room.power_levels", "m.room.name", "room"]),
                        number(c),
                    );
                    Value::Object(m)
                } else {
                    number(c)
                };
                o.insert(field, value);
            }
            let mut users = Object::new();
            users.insert(sender, Value::Int(Int::saturating(100)));
            for _ in 0..c.below(4) {
                users.insert(c.pick(&USERS), number(c));
            }
            o.insert("users", users);
        }
        "m.room.join_rules" => {
            let rule = if n == 3 && c.below(8) != 0 {
                "public"
            } else {
                c.pick(&JOIN_RULES)
            };
            o.insert("join_rule", rule);
            if c.below(3) == 0 {
                let mut allow = Object::new();
                allow.insert("type", c.pick(&["m.room_membership", "x"]));
                allow.insert("room_id", "!other:b");
                o.insert("allow", Value::Array(vec![Value::Object(allow)]));
            }
        }
        "m.room.server_acl" => {
            let globs = |c: &mut Choices<'_>| {
                Value::Array(
                    (0..c.below(3))
                        .map(|_| Value::from(c.pick(&["*", "a", "b", "?", "*.example", "c"])))
                        .collect(),
                )
            };
            let allow = globs(c);
            o.insert("allow", allow);
            let deny = globs(c);
            o.insert("deny", deny);
            o.insert("allow_ip_literals", number(c));
        }
        "m.room.redaction" if v.redacts_in_content => {
            if let Some(id) = known.get(c.below(known.len() + 1)) {
                o.insert("redacts", id.as_str());
            }
        }
        "m.room.third_party_invite" => {
            o.insert("display_name", "x");
            o.insert("public_key", c.pick(&["AAAA", "", "!"]));
        }
        _ => {
            o.insert("body", c.pick(&["hi", "", "\u{0}"]));
            if c.below(4) == 0 {
                o.insert("n", number(c));
            }
        }
    }
    o
}

/// Changes one top-level field to something a sender could send: a depth out of range, a
/// missing field, a field of the wrong type, an extra field.
fn mutate_top_level(c: &mut Choices<'_>, pdu: &mut Object) {
    let field = c.pick(&[
        "depth",
        "prev_events",
        "auth_events",
        "state_key",
        "sender",
        "origin_server_ts",
        "type",
        "extra",
    ]);
    let _ = match c.below(3) {
        0 => pdu.remove(field),
        1 => pdu.insert(field, number(c)),
        _ => pdu.insert(field, Value::from(c.pick(&USERS))),
    };
}
