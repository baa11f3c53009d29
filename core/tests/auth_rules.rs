//! The authorization rules, scenario by scenario, through the full receipt pipeline
//! (`Room::receive`), in the room versions where each rule applies. Every `auth_*` reason code is
//! hit at least once (checked at the end).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::*;
use mxfed_core::canonical::{Object, Value};
use mxfed_core::event::{build_event, hash_and_sign_event, EventTemplate};
use mxfed_core::keys::SigningKey;
use mxfed_core::room::{Room, RoomVerdict};
use mxfed_core::{RoomVersion, Timestamp};

fn all_versions() -> impl Iterator<Item = &'static RoomVersion> {
    RoomVersion::ALL.into_iter()
}

#[test]
fn membership_rules_in_every_version() {
    for v in all_versions() {
        let mut t = T::new(v, "invite");
        // Not invited: cannot join an invite-only room.
        t.rejected(
            "auth_join_not_allowed",
            B,
            "m.room.member",
            Some(B),
            r#"{"membership":"join"}"#,
        );
        // Cannot join for someone else, cannot send without joining, no membership.
        t.rejected(
            "auth_join_not_self",
            A,
            "m.room.member",
            Some(C),
            r#"{"membership":"join"}"#,
        );
        t.rejected(
            "auth_not_joined",
            B,
            "m.room.message",
            None,
            r#"{"body":"hi"}"#,
        );
        t.rejected(
            "auth_member_malformed",
            A,
            "m.room.member",
            Some(B),
            r#"{"displayname":"x"}"#,
        );
        t.rejected(
            "auth_unknown_membership",
            A,
            "m.room.member",
            Some(B),
            r#"{"membership":"dance"}"#,
        );
        // Invite, then join.
        t.ok(A, "m.room.member", Some(B), r#"{"membership":"invite"}"#);
        t.join(B);
        t.rejected(
            "auth_invite_already_joined",
            A,
            "m.room.member",
            Some(B),
            r#"{"membership":"invite"}"#,
        );
        // Bob (power 0) cannot invite when invite needs 50, kick or ban.
        let u = t.users("");
        t.ok(
            A,
            "m.room.power_levels",
            Some(""),
            &format!(r#"{{"users":{u},"invite":50}}"#),
        );
        t.rejected(
            "auth_invite_insufficient_power",
            B,
            "m.room.member",
            Some(C),
            r#"{"membership":"invite"}"#,
        );
        t.rejected(
            "auth_kick_insufficient_power",
            B,
            "m.room.member",
            Some(A),
            r#"{"membership":"leave"}"#,
        );
        t.rejected(
            "auth_ban_insufficient_power",
            B,
            "m.room.member",
            Some(A),
            r#"{"membership":"ban"}"#,
        );
        // Alice bans carol (not in the room), carol cannot join or be invited; bob cannot unban.
        t.ok(A, "m.room.member", Some(C), r#"{"membership":"ban"}"#);
        t.rejected(
            "auth_join_banned",
            C,
            "m.room.member",
            Some(C),
            r#"{"membership":"join"}"#,
        );
        t.rejected(
            "auth_invite_banned",
            A,
            "m.room.member",
            Some(C),
            r#"{"membership":"invite"}"#,
        );
        t.rejected(
            "auth_unban_insufficient_power",
            B,
            "m.room.member",
            Some(C),
            r#"{"membership":"leave"}"#,
        );
        t.ok(A, "m.room.member", Some(C), r#"{"membership":"leave"}"#);
        // Kick bob; bob then cannot send.
        t.ok(A, "m.room.member", Some(B), r#"{"membership":"leave"}"#);
        t.rejected(
            "auth_not_joined",
            B,
            "m.room.message",
            None,
            r#"{"body":"still here?"}"#,
        );
        // Leaving yourself is always fine when joined.
        t.ok(A, "m.room.member", Some(A), r#"{"membership":"leave"}"#);
    }
}

#[test]
fn public_rooms_and_state_rules() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        t.join(B);
        t.ok(B, "m.room.message", None, r#"{"body":"hi"}"#);
        // State needs state_default 50.
        t.rejected(
            "auth_send_insufficient_power",
            B,
            "m.room.topic",
            Some(""),
            r#"{"topic":"x"}"#,
        );
        t.ok(A, "m.room.topic", Some(""), r#"{"topic":"x"}"#);
        // A state key naming another user.
        t.rejected(
            "auth_state_key_not_sender",
            A,
            "org.example.state",
            Some(B),
            r#"{}"#,
        );
        t.ok(A, "org.example.state", Some(A), r#"{}"#);
        // Third-party invite events need the invite level.
        let u = t.users("");
        t.ok(
            A,
            "m.room.power_levels",
            Some(""),
            &format!(r#"{{"users":{u},"invite":10,"events":{{"m.room.third_party_invite":0}}}}"#),
        );
        t.rejected(
            "auth_third_party_invite_insufficient_power",
            B,
            "m.room.third_party_invite",
            Some("tok"),
            r#"{"display_name":"x","public_key":"AAAA"}"#,
        );
    }
}

#[test]
fn power_level_rules() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        t.join(B);
        let u50 = t.users(&format!(r#""{B}":50"#));
        t.ok(
            A,
            "m.room.power_levels",
            Some(""),
            &format!(r#"{{"users":{u50},"state_default":50}}"#),
        );
        // Bob (50) cannot raise himself above 50, nor set a level above his own.
        let u60 = t.users(&format!(r#""{B}":60"#));
        t.rejected(
            "auth_power_levels_too_high",
            B,
            "m.room.power_levels",
            Some(""),
            &format!(r#"{{"users":{u60}}}"#),
        );
        t.rejected(
            "auth_power_levels_too_high",
            B,
            "m.room.power_levels",
            Some(""),
            &format!(r#"{{"users":{u50},"kick":75}}"#),
        );
        // Alice cannot demote a user of equal power... (make carol 100 then try as alice)
        t.join(C);
        if !v.privileged_creators {
            t.ok(
                A,
                "m.room.power_levels",
                Some(""),
                &format!(r#"{{"users":{{"{A}":100,"{B}":50,"{C}":100}}}}"#),
            );
            t.rejected(
                "auth_power_levels_equal_user",
                A,
                "m.room.power_levels",
                Some(""),
                &format!(r#"{{"users":{{"{A}":100,"{B}":50,"{C}":0}}}}"#),
            );
        }
        // Invalid users.
        t.rejected(
            "auth_power_levels_invalid",
            A,
            "m.room.power_levels",
            Some(""),
            r#"{"users":{"not-a-user":5}}"#,
        );
        // Strings: fine before v10, invalid from v10.
        let stringy = format!(r#"{{"users":{{"{A}":"100","{B}":50,"{C}":100}}}}"#);
        if v.integer_power_levels {
            t.rejected(
                "auth_power_levels_invalid",
                A,
                "m.room.power_levels",
                Some(""),
                &stringy,
            );
        } else if !v.privileged_creators {
            t.ok(A, "m.room.power_levels", Some(""), &stringy);
        }
    }
}

/// The power-levels rule applies by type: under any state key, and to a non-state event, the
/// content is validated (user IDs, integer levels from v10, no creators in v12); the comparison
/// is with the event of the same state key, which the auth events never hold for a key other than
/// "", so a valid one is accepted whatever levels it sets. Synapse 1.163.2 gives each verdict
/// (and rejects every non-state one: it fails reading its state key).
#[test]
fn power_levels_rule_applies_whatever_the_state_key() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        t.join(B);
        for sk in [Some("x"), None] {
            t.rejected(
                "auth_power_levels_invalid",
                A,
                "m.room.power_levels",
                sk,
                r#"{"users":{"not-a-user":5}}"#,
            );
        }
        let ban = r#"{"ban":"50"}"#;
        if v.integer_power_levels {
            t.rejected(
                "auth_power_levels_invalid",
                A,
                "m.room.power_levels",
                Some("y"),
                ban,
            );
        } else {
            t.ok(A, "m.room.power_levels", Some("y"), ban);
        }
        if v.privileged_creators {
            t.rejected(
                "auth_power_levels_creator_in_users",
                A,
                "m.room.power_levels",
                Some("z"),
                &format!(r#"{{"users":{{"{A}":1}}}}"#),
            );
        }
        // Above alice's own level: nothing under "z" to compare with, so accepted; it is not the
        // room's power levels, so bob gains nothing.
        let high = format!(r#"{{"users":{{"{B}":1000}},"state_default":0}}"#);
        t.ok(A, "m.room.power_levels", Some("z"), &high);
        t.rejected(
            "auth_send_insufficient_power",
            B,
            "m.room.topic",
            Some(""),
            r#"{"topic":"x"}"#,
        );
        // The same content as a non-state event is rejected.
        t.rejected(
            "auth_power_levels_invalid",
            A,
            "m.room.power_levels",
            None,
            &high,
        );
    }
}

/// The keys of `users` need only look like user IDs (`@`, then a `:`), as Synapse's
/// `UserID.from_string` checks: a server name that is not valid does not reject the event
/// (Synapse 1.163.2 accepts each of these).
#[test]
fn power_levels_users_keys_need_only_look_like_user_ids() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        for user in ["@x:bad host", "@x:", "@x:a:123456", "@x:[zz]", "@:"] {
            let users = t.users(&format!(r#""{user}":0"#));
            t.ok(
                A,
                "m.room.power_levels",
                Some(""),
                &format!(r#"{{"users":{users}}}"#),
            );
        }
        for user in ["x:a", "@x", ""] {
            let users = t.users(&format!(r#""{user}":0"#));
            t.rejected(
                "auth_power_levels_invalid",
                A,
                "m.room.power_levels",
                Some(""),
                &format!(r#"{{"users":{users}}}"#),
            );
        }
    }
}

/// v1–9: a `null` under `events` in the room's first power levels (accepted: before v10 only
/// `users` is validated, and there is nothing to compare with) is no entry, so the default send
/// level applies. Synapse 1.163.2 accepts the message and rejects the topic (state_default 50).
#[test]
fn null_event_levels_read_as_absent() {
    for v in all_versions().filter(|v| !v.integer_power_levels) {
        let mut t = T::with_power_levels(
            v,
            "public",
            &format!(
                r#"{{"users":{{"{A}":100}},"events":{{"m.room.message":null,"m.room.topic":null}}}}"#
            ),
        );
        t.join(B);
        t.ok(B, "m.room.message", None, r#"{"body":"x"}"#);
        t.rejected(
            "auth_send_insufficient_power",
            B,
            "m.room.topic",
            Some(""),
            r#"{"topic":"x"}"#,
        );
        t.ok(A, "m.room.topic", Some(""), r#"{"topic":"x"}"#);
    }
}

/// Power levels whose `events` is present but not an object are rejected in every version, and
/// so is a non-object `notifications` from v6 (where the auth rules read it); before v6
/// `notifications` is not read and anything goes. Synapse 1.163.2 gives these verdicts when
/// there are previous power levels (it fails on the value); see `check_power_levels` for the
/// first power levels of a room, where we reject and Synapse does not.
#[test]
fn power_levels_containers_must_be_objects() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        let u = t.users("");
        for (key, val) in [
            ("events", "5"),
            ("events", r#""abc""#),
            ("events", "[]"),
            ("events", "null"),
            ("notifications", "5"),
            ("notifications", r#""room""#),
        ] {
            let content = format!(r#"{{"users":{u},"{key}":{val}}}"#);
            if key == "notifications" && !v.limit_notifications_power_levels {
                t.ok(A, "m.room.power_levels", Some(""), &content);
            } else {
                t.rejected(
                    "auth_power_levels_invalid",
                    A,
                    "m.room.power_levels",
                    Some(""),
                    &content,
                );
            }
        }
    }
}

#[test]
fn v12_creators_have_infinite_power_and_are_not_in_users() {
    let v = RoomVersion::get("12").unwrap();
    let mut t = T::new(v, "public");
    t.join(B);
    t.rejected(
        "auth_power_levels_creator_in_users",
        A,
        "m.room.power_levels",
        Some(""),
        &format!(r#"{{"users":{{"{A}":100}}}}"#),
    );
    t.ok(
        A,
        "m.room.power_levels",
        Some(""),
        &format!(r#"{{"users":{{"{B}":100}}}}"#),
    );
    // Bob has 100 but cannot kick or ban the creator (infinite power).
    t.rejected(
        "auth_kick_insufficient_power",
        B,
        "m.room.member",
        Some(A),
        r#"{"membership":"leave"}"#,
    );
    t.rejected(
        "auth_ban_insufficient_power",
        B,
        "m.room.member",
        Some(A),
        r#"{"membership":"ban"}"#,
    );
    // The creator can demote bob.
    t.ok(
        A,
        "m.room.power_levels",
        Some(""),
        &format!(r#"{{"users":{{"{B}":0}}}}"#),
    );
    // additional_creators must be user IDs.
    let mut t2 = T::new(v, "public");
    let (_, mut create) = t2.build(
        A,
        "m.room.create",
        Some(""),
        r#"{"room_version":"12","additional_creators":["nope"]}"#,
    );
    create = t2.resign(create);
    assert_eq!(
        t2.receive(create),
        RoomVerdict::Rejected {
            code: "auth_create_bad_additional_creators"
        }
    );
}

/// v12 `additional_creators` are checked as Synapse 1.163.2 checks them
/// (`check_valid_additional_creators`: `UserID.is_valid`, at most 255 bytes); a rejected create
/// event rejects the room, so each verdict here is Synapse's.
#[test]
fn additional_creators_are_checked_as_synapse_does() {
    let v = RoomVersion::get("12").unwrap();
    let at_limit = format!("@{}:b", "a".repeat(252));
    let over_limit = format!("@{}:b", "a".repeat(253));
    let accepted = [
        at_limit.as_str(),
        "@x:a:123456",
        "@x:b:+1",
        "@x:b:-1",
        "@x:b:1_0",
        "@x:b: 1",
        "@x:b:\u{668}\u{660}",
        "@x:b:99999999999999999999",
        "@x:[::1]",
        "@x:[::1]:8",
        "@x:1.2.3.4",
        "@x:-a",
        "@x:B-c.d",
        "@:b",
        "@\u{e9}:b",
    ];
    let rejected = [
        over_limit.as_str(),
        "@x:a..b",
        "@x:.",
        "@x:a.",
        "@x:a_b",
        "@x:bad host",
        "@x:",
        "@x:b:",
        "@x::8",
        "@x:[zz]",
        "@x:[]",
        "@x:[::1]:",
        "@x:[1.2.3.4]",
        "x:b",
        "nope",
    ];
    for (creator, ok) in accepted
        .iter()
        .map(|c| (c, true))
        .chain(rejected.iter().map(|c| (c, false)))
    {
        let mut t = T::new(v, "public");
        let (_, create) = t.build(
            A,
            "m.room.create",
            Some(""),
            &format!(r#"{{"room_version":"12","additional_creators":["{creator}"]}}"#),
        );
        let create = t.resign(create);
        let expected = if ok {
            RoomVerdict::Accepted
        } else {
            RoomVerdict::Rejected {
                code: "auth_create_bad_additional_creators",
            }
        };
        assert_eq!(T::new(v, "public").receive(create), expected, "{creator}");
    }
}

#[test]
fn knock_and_restricted_rules() {
    for v in all_versions().filter(|v| v.knock) {
        let mut t = T::new(v, "knock");
        t.ok(B, "m.room.member", Some(B), r#"{"membership":"knock"}"#);
        t.rejected(
            "auth_knock_not_self",
            B,
            "m.room.member",
            Some(C),
            r#"{"membership":"knock"}"#,
        );
        t.rejected(
            "auth_join_not_allowed",
            B,
            "m.room.member",
            Some(B),
            r#"{"membership":"join"}"#,
        );
        t.ok(A, "m.room.member", Some(B), r#"{"membership":"invite"}"#);
        t.rejected(
            "auth_knock_bad_membership",
            B,
            "m.room.member",
            Some(B),
            r#"{"membership":"knock"}"#,
        );
        t.join(B);
        let mut p = T::new(v, "public");
        p.rejected(
            "auth_knock_not_allowed",
            B,
            "m.room.member",
            Some(B),
            r#"{"membership":"knock"}"#,
        );
    }
    for v in all_versions().filter(|v| !v.knock) {
        let mut t = T::new(v, "knock");
        t.rejected(
            "auth_unknown_membership",
            B,
            "m.room.member",
            Some(B),
            r#"{"membership":"knock"}"#,
        );
    }
    for v in all_versions().filter(|v| v.restricted_join_rule) {
        let mut t = T::new(v, "restricted");
        t.rejected(
            "auth_join_bad_authoriser",
            B,
            "m.room.member",
            Some(B),
            r#"{"membership":"join"}"#,
        );
        // An authoriser (on the joiner's own server, so signatures pass) who is not joined.
        t.rejected(
            "auth_join_bad_authoriser",
            B,
            "m.room.member",
            Some(B),
            r#"{"membership":"join","join_authorised_via_users_server":"@dave:b.example"}"#,
        );
        // Authorised by alice (joined, power ≥ invite) but alice's server did not sign.
        t.rejected(
            "signature_missing",
            B,
            "m.room.member",
            Some(B),
            &format!(r#"{{"membership":"join","join_authorised_via_users_server":"{A}"}}"#),
        );
        // Both servers sign: accepted.
        let (_, mut ev) = t.build(
            B,
            "m.room.member",
            Some(B),
            &format!(r#"{{"membership":"join","join_authorised_via_users_server":"{A}"}}"#),
        );
        mxfed_core::signing::sign_json(&mut ev, "a.example", &key("a.example")).unwrap();
        // sign_json signs the full event; event signatures cover the redacted form: re-sign properly.
        ev.get_object("signatures").unwrap();
        let mut ev2 = ev.clone();
        ev2.remove("signatures");
        ev2.insert("signatures", Object::new());
        hash_and_sign_event(&mut ev2, v, "b.example", &key("b.example")).unwrap();
        hash_and_sign_event(&mut ev2, v, "a.example", &key("a.example")).unwrap();
        assert_eq!(t.receive(ev2), RoomVerdict::Accepted, "v{}", v.id);
    }
}

/// A `join_rule` that is present but not a string names no rule: no one may join, not even a
/// member or an invitee, and no one may knock. Only an absent `join_rule` reads as `invite`.
/// (Synapse 1.163.2: `You are not allowed to join this room` for each join below.)
#[test]
fn non_string_join_rule_lets_no_one_join() {
    for v in all_versions() {
        for rule in ["5", "null", r#"["public"]"#] {
            let mut t = T::new(v, "public");
            t.join(B);
            t.ok(
                A,
                "m.room.join_rules",
                Some(""),
                &format!(r#"{{"join_rule":{rule}}}"#),
            );
            // Bob, joined, changes his profile: a join under no join rule.
            t.rejected(
                "auth_join_not_allowed",
                B,
                "m.room.member",
                Some(B),
                r#"{"membership":"join","displayname":"Bob"}"#,
            );
            // Invites still work; the invitee cannot join.
            t.ok(A, "m.room.member", Some(C), r#"{"membership":"invite"}"#);
            t.rejected(
                "auth_join_not_allowed",
                C,
                "m.room.member",
                Some(C),
                r#"{"membership":"join"}"#,
            );
            if v.knock {
                t.rejected(
                    "auth_knock_not_allowed",
                    "@dave:b.example",
                    "m.room.member",
                    Some("@dave:b.example"),
                    r#"{"membership":"knock"}"#,
                );
            }
        }
        // No `join_rule` at all: the default, invite, lets the invitee in.
        let mut t = T::new(v, "public");
        t.ok(A, "m.room.join_rules", Some(""), r#"{}"#);
        t.ok(A, "m.room.member", Some(C), r#"{"membership":"invite"}"#);
        t.join(C);
        t.rejected(
            "auth_join_not_allowed",
            B,
            "m.room.member",
            Some(B),
            r#"{"membership":"join"}"#,
        );
    }
}

#[test]
fn independent_rules_and_auth_event_shape() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        t.join(B);
        // Cite an auth event that is not allowed (join rules for a message).
        let (_, mut ev) = t.build(B, "m.room.message", None, r#"{"body":"x"}"#);
        let jr = t.room.current_state()[&("m.room.join_rules".to_owned(), String::new())].clone();
        let mut auth = ev.get("auth_events").unwrap().as_array().unwrap().to_vec();
        let jr_ref = if v.event_refs_with_hashes {
            Value::Array(vec![Value::from(jr.as_str()), Value::Object(Object::new())])
        } else {
            Value::from(jr.as_str())
        };
        auth.push(jr_ref.clone());
        ev.insert("auth_events", Value::Array(auth.clone()));
        assert_eq!(
            t.receive_resigned(ev.clone()),
            RoomVerdict::Rejected {
                code: "auth_events_unexpected"
            },
            "v{}",
            v.id
        );
        // Cite the same auth event twice.
        let mut dup = auth.clone();
        dup.pop();
        dup.push(dup[0].clone());
        ev.insert("auth_events", Value::Array(dup));
        assert_eq!(
            t.receive_resigned(ev.clone()),
            RoomVerdict::Rejected {
                code: "auth_events_duplicate"
            },
            "v{}",
            v.id
        );
        // Cite an unknown event.
        let mut unknown = auth.clone();
        unknown.pop();
        unknown.push(if v.event_refs_with_hashes {
            Value::Array(vec![
                Value::from("$nope:a.example"),
                Value::Object(Object::new()),
            ])
        } else {
            Value::from("$nope")
        });
        ev.insert("auth_events", Value::Array(unknown));
        assert_eq!(
            t.receive_resigned(ev.clone()),
            RoomVerdict::Rejected {
                code: "auth_events_missing"
            },
            "v{}",
            v.id
        );
        if !v.room_id_from_create_event {
            // No create event cited.
            let no_create: Vec<Value> = auth
                .iter()
                .filter(|a| {
                    let id = if v.event_refs_with_hashes {
                        a.as_array().unwrap()[0].as_str().unwrap()
                    } else {
                        a.as_str().unwrap()
                    };
                    t.room.event(id).unwrap().0.kind() != "m.room.create" && *a != &jr_ref
                })
                .cloned()
                .collect();
            ev.insert("auth_events", Value::Array(no_create));
            assert_eq!(
                t.receive_resigned(ev.clone()),
                RoomVerdict::Rejected {
                    code: "auth_events_no_create"
                },
                "v{}",
                v.id
            );
        }
    }
}

#[test]
fn create_event_rules() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        let (_, base) = t.build(
            A,
            "m.room.create",
            Some(""),
            &format!(r#"{{"creator":"{A}","room_version":"{}"}}"#, v.id),
        );
        let mut with_prev = base.clone();
        with_prev.insert(
            "prev_events",
            Value::Array(
                t.prev()
                    .iter()
                    .map(|p| {
                        if v.event_refs_with_hashes {
                            Value::Array(vec![
                                Value::from(p.event_id.as_str()),
                                Value::Object(Object::new()),
                            ])
                        } else {
                            Value::from(p.event_id.as_str())
                        }
                    })
                    .collect(),
            ),
        );
        assert_eq!(
            T::new(v, "public").receive(t.resign(with_prev)),
            RoomVerdict::Rejected {
                code: "auth_create_has_prev_events"
            }
        );
        let mut unknown = base.clone();
        unknown.insert(
            "content",
            obj(&format!(r#"{{"creator":"{A}","room_version":"99"}}"#)),
        );
        assert_eq!(
            T::new(v, "public").receive(t.resign(unknown)),
            RoomVerdict::Rejected {
                code: "auth_create_unknown_version"
            }
        );
        if !v.implicit_room_creator {
            let mut no_creator = base.clone();
            no_creator.insert("content", obj(r#"{}"#));
            assert_eq!(
                T::new(v, "public").receive(t.resign(no_creator)),
                RoomVerdict::Rejected {
                    code: "auth_create_no_creator"
                }
            );
        }
        if !v.room_id_from_create_event {
            let mut other = base.clone();
            other.insert("room_id", "!x:b.example");
            assert_eq!(
                T::new(v, "public").receive(t.resign(other)),
                RoomVerdict::Rejected {
                    code: "auth_create_room_id_mismatch"
                }
            );
        }
    }
}

#[test]
fn aliases_federation_and_redaction_rules() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        t.join(B);
        if v.special_case_aliases_auth {
            t.rejected(
                "auth_aliases_state_key",
                B,
                "m.room.aliases",
                Some("a.example"),
                r#"{"aliases":[]}"#,
            );
            t.ok(B, "m.room.aliases", Some("b.example"), r#"{"aliases":[]}"#);
        } else {
            t.rejected(
                "auth_send_insufficient_power",
                B,
                "m.room.aliases",
                Some("b.example"),
                r#"{"aliases":[]}"#,
            );
        }
        if v.redaction_auth_rule {
            let (_, mut r) = t.build(B, "m.room.redaction", None, "{}");
            r.insert("redacts", "$something:a.example");
            assert_eq!(
                t.receive_resigned(r.clone()),
                RoomVerdict::Rejected {
                    code: "auth_redaction_insufficient_power"
                },
                "v{}",
                v.id
            );
            // No target, or one that is not a string: rejected by the spec's rule (Synapse
            // 1.163.2 accepts both; see `check_state_dependent`).
            let (_, none) = t.build(B, "m.room.redaction", None, "{}");
            let mut number = none.clone();
            number.insert("redacts", mxfed_core::canonical::Int::new(5).unwrap());
            for r in [none, number] {
                assert_eq!(
                    t.receive_resigned(r),
                    RoomVerdict::Rejected {
                        code: "auth_redaction_insufficient_power"
                    },
                    "v{}",
                    v.id
                );
            }
            r.insert("redacts", "$something:b.example");
            assert_eq!(t.receive_resigned(r), RoomVerdict::Accepted, "v{}", v.id);
        } else {
            let (_, mut r) = t.build(B, "m.room.redaction", None, "{}");
            r.insert("redacts", "$something");
            assert_eq!(
                t.receive_resigned(r),
                RoomVerdict::Accepted,
                "v{}: v3+ redactions pass auth",
                v.id
            );
        }
    }
    // m.federate: false keeps other servers out.
    for v in all_versions() {
        let mut t = T::new(v, "public");
        let (_, mut create) = t.build(
            A,
            "m.room.create",
            Some(""),
            &format!(
                r#"{{"creator":"{A}","room_version":"{}","m.federate":false}}"#,
                v.id
            ),
        );
        create = t.resign(create);
        let mut t = T::new(v, "public");
        t.room = Room::new(v);
        let id = if v.room_id_from_create_event {
            mxfed_core::event::room_id_from_create(&create, v).unwrap()
        } else {
            create.get_str("room_id").unwrap().to_owned()
        };
        t.room_id = id;
        assert_eq!(t.receive(create), RoomVerdict::Accepted);
        t.join(A);
        t.ok(
            A,
            "m.room.join_rules",
            Some(""),
            r#"{"join_rule":"public"}"#,
        );
        t.rejected(
            "auth_not_federated",
            B,
            "m.room.member",
            Some(B),
            r#"{"membership":"join"}"#,
        );
        t.join(C);
    }
}

#[test]
fn v12_room_id_must_name_the_create_event() {
    let v = RoomVersion::get("12").unwrap();
    let mut t = T::new(v, "public");
    let (_, mut ev) = t.build(A, "m.room.message", None, r#"{"body":"x"}"#);
    ev.insert("room_id", "!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        t.receive_resigned(ev),
        RoomVerdict::Rejected {
            code: "auth_room_id_not_create"
        }
    );
}

#[test]
fn soft_fail_against_current_state() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        t.join(B);
        // Bob sends a message citing an older state, after he was banned: it passes against the
        // state before it (its prev events) but not the current state.
        let prev_before_ban = t.prev();
        let state_before_ban = t.state_refs();
        t.ok(A, "m.room.member", Some(B), r#"{"membership":"ban"}"#);
        t.ts += 1;
        let tpl = EventTemplate {
            room_id: Some(t.room_id.clone()),
            event_type: "m.room.message".into(),
            sender: B.into(),
            state_key: None,
            content: obj(r#"{"body":"sneaky"}"#),
            redacts: None,
        };
        let b = build_event(
            v,
            "b.example",
            &tpl,
            &prev_before_ban,
            &state_before_ban,
            Timestamp(t.ts),
            &key("b.example"),
            Some("late"),
        )
        .unwrap();
        let verdict = t.receive(b.pdu);
        assert_eq!(
            verdict,
            RoomVerdict::SoftFailed {
                code: "auth_not_joined"
            },
            "v{}",
            v.id
        );
        assert!(t.room.is_soft_failed(&b.event_id));
        assert!(!t.room.forward_extremities().contains(&b.event_id));
    }
}

#[test]
fn rejected_auth_events_reject_their_dependents() {
    for v in all_versions() {
        let mut t = T::new(v, "invite");
        // Bob's self-join is rejected; an event citing it is rejected too.
        let (_, join) = t.build(B, "m.room.member", Some(B), r#"{"membership":"join"}"#);
        let join_id = mxfed_core::event::event_id(&join, v).unwrap();
        assert_eq!(
            t.receive(join),
            RoomVerdict::Rejected {
                code: "auth_join_not_allowed"
            }
        );
        let (_, mut msg) = t.build(A, "m.room.message", None, r#"{"body":"x"}"#);
        let mut auth = msg.get("auth_events").unwrap().as_array().unwrap().to_vec();
        auth.retain(|a| {
            let id = if v.event_refs_with_hashes {
                a.as_array().unwrap()[0].as_str().unwrap()
            } else {
                a.as_str().unwrap()
            };
            t.room.event(id).unwrap().0.kind() != "m.room.member"
        });
        auth.push(if v.event_refs_with_hashes {
            Value::Array(vec![
                Value::from(join_id.as_str()),
                Value::Object(Object::new()),
            ])
        } else {
            Value::from(join_id.as_str())
        });
        msg.insert("sender", B);
        msg.insert("auth_events", Value::Array(auth));
        assert_eq!(
            t.receive_resigned(msg),
            RoomVerdict::Rejected {
                code: "auth_events_rejected"
            },
            "v{}",
            v.id
        );
    }
}

#[test]
fn third_party_invites() {
    for v in all_versions() {
        let mut t = T::new(v, "invite");
        let idk = SigningKey::from_seed("0", &[42; 32]).unwrap();
        t.ok(
            A,
            "m.room.third_party_invite",
            Some("tok"),
            &format!(
                r#"{{"display_name":"b…","public_key":"{}"}}"#,
                idk.verify_key().to_base64()
            ),
        );
        let mut signed = obj(&format!(r#"{{"mxid":"{B}","token":"tok"}}"#));
        mxfed_core::signing::sign_json(&mut signed, "id.example", &idk).unwrap();
        let mut content = Object::new();
        content.insert("membership", "invite");
        let mut tpi = Object::new();
        tpi.insert("display_name", "b…");
        tpi.insert("signed", signed.clone());
        content.insert("third_party_invite", tpi.clone());
        // Forged: the signed block names someone else.
        let mut forged = content.clone();
        let mut bad = signed.clone();
        bad.insert("mxid", C);
        let mut bad_tpi = tpi.clone();
        bad_tpi.insert("signed", bad);
        forged.insert("third_party_invite", bad_tpi);
        t.rejected(
            "auth_invite_bad_third_party",
            A,
            "m.room.member",
            Some(B),
            &forged.to_canonical_string(),
        );
        t.ok(A, "m.room.member", Some(B), &content.to_canonical_string());
        t.join(B);
    }
}

/// An identifier, `type` or `state_key` over 255 bytes but within 255 code points: in v1–10
/// the event is kept as rejected (Synapse 1.163.2: `EventSizeError`, unpersistable only from
/// v11), so an event citing it as a prev event is still accepted; from v11 it is dropped. Over
/// 255 code points it is dropped in every version.
#[test]
fn fields_over_255_bytes_are_rejected_before_v11_and_dropped_after() {
    use mxfed_core::auth::Pdu;
    let wide = "\u{4e2d}".repeat(100);
    let too_many = "\u{4e2d}".repeat(256);
    for v in all_versions() {
        let mut t = T::new(v, "public");
        for (field, value) in [("state_key", &wide), ("type", &wide)] {
            let (_, mut ev) = t.build(A, "org.example.state", Some("k"), "{}");
            ev.insert(field, value.as_str());
            let ev = t.resign(ev);
            let id = Pdu::new(ev.clone(), v).unwrap().event_id;
            let verdict = t.receive(ev);
            if v.strict_event_byte_limits {
                assert_eq!(
                    verdict,
                    RoomVerdict::Rejected {
                        code: "pdu_field_too_long"
                    },
                    "v{} {field}",
                    v.id
                );
            } else {
                assert_eq!(
                    verdict,
                    RoomVerdict::Rejected {
                        code: "auth_field_too_long"
                    },
                    "v{} {field}",
                    v.id
                );
                let at = t.after(&id);
                let (_, next) = t.send_at(&at, A, "m.room.message", None, r#"{"body":"after"}"#);
                assert_eq!(next, RoomVerdict::Accepted, "v{} {field}", v.id);
            }
        }
        let (_, mut ev) = t.build(A, "org.example.state", Some("k"), "{}");
        ev.insert("state_key", too_many.as_str());
        assert_eq!(
            t.receive_resigned(ev),
            RoomVerdict::Rejected {
                code: "pdu_field_too_long"
            },
            "v{}",
            v.id
        );
    }
}

#[test]
fn every_auth_code_is_hit() {
    // Run the scenarios (again) in this test so the check does not depend on test order.
    membership_rules_in_every_version();
    public_rooms_and_state_rules();
    power_level_rules();
    power_levels_rule_applies_whatever_the_state_key();
    power_levels_users_keys_need_only_look_like_user_ids();
    null_event_levels_read_as_absent();
    power_levels_containers_must_be_objects();
    v12_creators_have_infinite_power_and_are_not_in_users();
    knock_and_restricted_rules();
    non_string_join_rule_lets_no_one_join();
    independent_rules_and_auth_event_shape();
    create_event_rules();
    aliases_federation_and_redaction_rules();
    v12_room_id_must_name_the_create_event();
    soft_fail_against_current_state();
    rejected_auth_events_reject_their_dependents();
    third_party_invites();
    bad_power_levels_in_state();
    fields_over_255_bytes_are_rejected_before_v11_and_dropped_after();
    let hit = HIT.lock().unwrap().clone();
    let src = include_str!("../src/auth/rules.rs");
    let all: BTreeSet<&str> = src
        .lines()
        .filter_map(|l| l.split("=> \"auth_").nth(1))
        .map(|r| r.split('"').next().unwrap())
        .collect();
    let missing: Vec<_> = all
        .iter()
        .filter(|c| !hit.contains(format!("auth_{c}").as_str()))
        .collect();
    // Codes only reachable by corrupt state that the pipeline never stores are exercised by unit
    // checks below instead.
    assert!(missing.is_empty(), "auth codes never hit: {missing:?}");
}

#[test]
fn bad_power_levels_in_state() {
    // A v1 room whose PL event holds an "events" level that is not a number: it was accepted
    // (only users are validated), but every event needing it is then rejected.
    // The first PL event is not compared with anything, so only its users are validated.
    let v = RoomVersion::get("1").unwrap();
    let mut t = T::with_power_levels(
        v,
        "public",
        &format!(r#"{{"users":{{"{A}":100}},"events":{{"m.room.name":"high"}}}}"#),
    );
    t.rejected(
        "auth_bad_power_level",
        A,
        "m.room.name",
        Some(""),
        r#"{"name":"x"}"#,
    );
    // A later PL event changing it cannot be checked either.
    t.rejected(
        "auth_bad_power_level",
        A,
        "m.room.power_levels",
        Some(""),
        &format!(r#"{{"users":{{"{A}":100}}}}"#),
    );
    // And a create event with a room_id in v12.
    let v12 = RoomVersion::get("12").unwrap();
    let mut t = T::new(v12, "public");
    let (_, mut c) = t.build(A, "m.room.create", Some(""), r#"{"room_version":"12"}"#);
    c.insert("room_id", "!x");
    let c = t.resign(c);
    // The format check catches it before auth; the auth rule itself is checked directly.
    let pdu = mxfed_core::auth::Pdu::new(c, v12).unwrap();
    let e = mxfed_core::auth::check_create(&pdu).unwrap_err();
    HIT.lock().unwrap().insert(e.code());
    assert_eq!(e.code(), "auth_create_has_room_id");
    // A JoinAuthoriserUnsigned event can only reach auth rules directly (signature checks catch it
    // first in the pipeline).
    let mut t = T::new(RoomVersion::get("10").unwrap(), "restricted");
    let (_, ev) = t.build(
        B,
        "m.room.member",
        Some(B),
        &format!(r#"{{"membership":"join","join_authorised_via_users_server":"{A}"}}"#),
    );
    let pdu = mxfed_core::auth::Pdu::new(ev, t.v).unwrap();
    let state = t.state_pdus(|_| true);
    let auth: mxfed_core::auth::AuthEvents<'_> = state.iter().collect();
    let e = mxfed_core::auth::check_state_dependent(&pdu, &auth).unwrap_err();
    HIT.lock().unwrap().insert(e.code());
    assert_eq!(e.code(), "auth_join_authoriser_unsigned");
    // Auth events in another room.
    let mut other = T::new(RoomVersion::get("10").unwrap(), "public");
    other.room_id = "!other:a.example".into();
    let mut t = T::new(RoomVersion::get("10").unwrap(), "public");
    let (_, mut ev) = t.build(A, "m.room.message", None, r#"{"body":"x"}"#);
    ev.insert("room_id", "!other:a.example");
    let e = t.receive_resigned(ev);
    assert_eq!(
        e,
        RoomVerdict::Rejected {
            code: "auth_events_wrong_room"
        }
    );
    let _ = other;
}

/// The set of events an event is authorised against: the last event added under a key is the
/// one found; kinds that share a state key, and users, stay apart; non-state events are not kept.
#[test]
fn auth_events_find_the_last_event_added_under_a_key() {
    use mxfed_core::auth::{AuthEvents, Pdu};
    let v = RoomVersion::get("10").unwrap();
    let pdu = |kind: &str, state_key: Option<&str>, depth: i64| {
        let mut o = Object::new();
        o.insert("type", kind);
        if let Some(sk) = state_key {
            o.insert("state_key", sk);
        }
        o.insert("depth", mxfed_core::canonical::Int::new(depth).unwrap());
        Pdu::new(o, v).unwrap()
    };
    let create = pdu("m.room.create", Some(""), 1);
    let levels = pdu("m.room.power_levels", Some(""), 2);
    let first = pdu("m.room.member", Some("@a:x"), 3);
    let other = pdu("m.room.member", Some("@b:x"), 4);
    let message = pdu("m.room.message", None, 5);
    let second = pdu("m.room.member", Some("@a:x"), 6);
    let auth: AuthEvents<'_> = [&create, &first, &levels, &message, &other, &second]
        .into_iter()
        .collect();
    let depth = |kind: &str, sk: &str| auth.get(kind, sk).map(Pdu::depth);
    assert_eq!(depth("m.room.member", "@a:x"), Some(6));
    assert_eq!(depth("m.room.member", "@b:x"), Some(4));
    assert_eq!(depth("m.room.create", ""), Some(1));
    assert_eq!(depth("m.room.power_levels", ""), Some(2));
    assert_eq!(depth("m.room.join_rules", ""), None);
    assert_eq!(depth("m.room.member", "@c:x"), None);
    assert_eq!(depth("m.room.message", ""), None);
    let mut again = auth.clone();
    again.insert(&first);
    assert_eq!(again.get("m.room.member", "@a:x").map(Pdu::depth), Some(3));
}

/// `join_authorised_via_users_server` on a membership other than a join needs no signature from
/// that user's server: Synapse checks the authorising server's signature only on joins
/// (`validate_event_for_room_version`), so an invite, a ban or a leave carrying the key is
/// accepted there, and must be here.
#[test]
fn authorising_user_on_other_memberships_needs_no_signature() {
    for v in all_versions().filter(|v| v.restricted_join_rule) {
        let mut t = T::new(v, "restricted");
        let via = r#""join_authorised_via_users_server":"@x:elsewhere.example""#;
        t.ok(
            A,
            "m.room.member",
            Some(B),
            &format!(r#"{{"membership":"invite",{via}}}"#),
        );
        t.ok(
            A,
            "m.room.member",
            Some(C),
            &format!(r#"{{"membership":"ban",{via}}}"#),
        );
        t.join(B);
        t.ok(
            B,
            "m.room.member",
            Some(B),
            &format!(r#"{{"membership":"leave",{via}}}"#),
        );
        // A join still needs it (checked directly: the signature check on receipt catches it
        // first in the pipeline).
        let (_, ev) = t.build(
            B,
            "m.room.member",
            Some(B),
            &format!(r#"{{"membership":"join",{via}}}"#),
        );
        let pdu = mxfed_core::auth::Pdu::new(ev, t.v).unwrap();
        let state = t.state_pdus(|_| true);
        let auth: mxfed_core::auth::AuthEvents<'_> = state.iter().collect();
        let e = mxfed_core::auth::check_state_dependent(&pdu, &auth).unwrap_err();
        assert_eq!(e.code(), "auth_join_authoriser_unsigned", "v{}", v.id);
    }
}

/// A malformed `redact` level rejects a redaction in every room version, not only in v1–2 where
/// the redaction rule reads it: Synapse's `check_redaction` reads it (and fails on it) before it
/// looks at the room version. v1–9 accept such power levels as a room's first.
#[test]
fn malformed_redact_level_rejects_redactions_in_every_version() {
    for v in all_versions().filter(|v| !v.integer_power_levels) {
        let mut t = T::with_power_levels(
            v,
            "public",
            &format!(r#"{{"users":{{"{A}":100}},"redact":"high"}}"#),
        );
        let target = "$target:a.example";
        let content = if v.redacts_in_content {
            format!(r#"{{"redacts":"{target}"}}"#)
        } else {
            "{}".to_owned()
        };
        let (_, mut ev) = t.build(A, "m.room.redaction", None, &content);
        if !v.redacts_in_content {
            ev.insert("redacts", target);
        }
        let ev = t.resign(ev);
        assert_eq!(
            t.receive(ev),
            RoomVerdict::Rejected {
                code: "auth_bad_power_level"
            },
            "v{}",
            v.id
        );
        // Other events are unaffected.
        t.ok(A, "m.room.message", None, r#"{"body":"x"}"#);
    }
}

/// Before v10 a string level is read as Python's `int()` reads it, decimal digits of any script
/// included: Synapse accepts power levels giving bob `"٥٠"` (50), and bob may then send state.
#[test]
fn string_levels_read_decimal_digits_of_any_script() {
    for v in all_versions().filter(|v| !v.integer_power_levels) {
        let mut t = T::new(v, "public");
        t.join(B);
        t.rejected(
            "auth_send_insufficient_power",
            B,
            "m.room.topic",
            Some(""),
            r#"{"topic":"x"}"#,
        );
        t.ok(
            A,
            "m.room.power_levels",
            Some(""),
            &format!(r#"{{"users":{{"{A}":100,"{B}":"\u0665\u0660"}}}}"#),
        );
        t.ok(B, "m.room.topic", Some(""), r#"{"topic":"x"}"#);
    }
}

/// The state-dependent rules need the create event: against a state without one, every event
/// (but a create event) is rejected, as Synapse rejects it ("missing a create event").
#[test]
fn state_without_create_event_authorises_nothing() {
    for v in all_versions() {
        let mut t = T::new(v, "public");
        let state = t.state_pdus(|k| k.0 != "m.room.create");
        let auth: mxfed_core::auth::AuthEvents<'_> = state.iter().collect();
        for (sender, kind, sk, content) in [
            (A, "m.room.message", None, r#"{"body":"x"}"#),
            (A, "m.room.topic", Some(""), r#"{"topic":"x"}"#),
            (B, "m.room.member", Some(B), r#"{"membership":"join"}"#),
        ] {
            let (_, ev) = t.build(sender, kind, sk, content);
            let pdu = mxfed_core::auth::Pdu::new(ev, t.v).unwrap();
            let e = mxfed_core::auth::check_state_dependent(&pdu, &auth).unwrap_err();
            assert_eq!(e.code(), "auth_events_no_create", "v{} {kind}", v.id);
        }
    }
}
