//! Power levels as the auth rules read them: defaults, creators, and the value types each room
//! version accepts (DIGEST §10.2).

use std::collections::BTreeSet;

use crate::canonical::{Object, Value};
use crate::room_version::RoomVersion;

use super::pdu::Pdu;

/// The power of a room version 12 creator: above every integer level.
pub const CREATOR_POWER: i64 = i64::MAX;

/// Reads a power level the way Synapse's `int(v)` does for the room version: integers always;
/// strings holding an integer (`" +0100 "`) before v10; floats (truncated) and booleans before
/// v6 (floats) / v10 (booleans are Python ints). `None` when the value is not a level.
pub fn level(v: &Value, version: &RoomVersion) -> Option<i64> {
    match v {
        Value::Int(i) => Some(i.get()),
        _ if version.integer_power_levels => None,
        Value::Bool(b) => Some(i64::from(*b)),
        Value::String(s) => parse_int_string(s),
        Value::Legacy(n) => {
            let raw = n.raw();
            if raw.contains(['.', 'e', 'E']) {
                let f = n.as_f64()?;
                f.is_finite()
                    .then(|| f.trunc().clamp(-9.2e18, 9.2e18) as i64)
            } else {
                raw.parse::<i128>()
                    .ok()
                    .map(|i| i.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
            }
        }
        _ => None,
    }
}

/// The zero of every run of Unicode decimal digits (general category Nd; each run is the ten
/// digits 0–9 in order, a Unicode stability guarantee), as Python's `int()` reads them: the
/// Unicode 14.0 table of Python 3.11, which the reference Synapse runs on. Pythons built on later
/// Unicode versions read a few more runs.
const DECIMAL_ZEROS: [char; 66] = [
    '\u{30}',
    '\u{660}',
    '\u{6F0}',
    '\u{7C0}',
    '\u{966}',
    '\u{9E6}',
    '\u{A66}',
    '\u{AE6}',
    '\u{B66}',
    '\u{BE6}',
    '\u{C66}',
    '\u{CE6}',
    '\u{D66}',
    '\u{DE6}',
    '\u{E50}',
    '\u{ED0}',
    '\u{F20}',
    '\u{1040}',
    '\u{1090}',
    '\u{17E0}',
    '\u{1810}',
    '\u{1946}',
    '\u{19D0}',
    '\u{1A80}',
    '\u{1A90}',
    '\u{1B50}',
    '\u{1BB0}',
    '\u{1C40}',
    '\u{1C50}',
    '\u{A620}',
    '\u{A8D0}',
    '\u{A900}',
    '\u{A9D0}',
    '\u{A9F0}',
    '\u{AA50}',
    '\u{ABF0}',
    '\u{FF10}',
    '\u{104A0}',
    '\u{10D30}',
    '\u{11066}',
    '\u{110F0}',
    '\u{11136}',
    '\u{111D0}',
    '\u{112F0}',
    '\u{11450}',
    '\u{114D0}',
    '\u{11650}',
    '\u{116C0}',
    '\u{11730}',
    '\u{118E0}',
    '\u{11950}',
    '\u{11C50}',
    '\u{11D50}',
    '\u{11DA0}',
    '\u{16A60}',
    '\u{16AC0}',
    '\u{16B50}',
    '\u{1D7CE}',
    '\u{1D7D8}',
    '\u{1D7E2}',
    '\u{1D7EC}',
    '\u{1D7F6}',
    '\u{1E140}',
    '\u{1E2F0}',
    '\u{1E950}',
    '\u{1FBF0}',
];

/// The value of a Unicode decimal digit (`'7'`, `'٧'`, `'７'`, `'𝟕'`), as Python's `int()` reads it.
fn decimal_digit(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    let i = DECIMAL_ZEROS.partition_point(|z| *z <= c).checked_sub(1)?;
    let offset = u32::from(c) - u32::from(DECIMAL_ZEROS[i]);
    u8::try_from(offset).ok().filter(|d| *d < 10)
}

/// The most digits Python's `int(str)` reads (`sys.int_info.default_max_str_digits`, 3.11+).
const PYTHON_MAX_STR_DIGITS: usize = 4_300;

/// Python's `int(str)`: surrounding whitespace, an optional ASCII sign, decimal digits of any
/// script (Python reads `"٥٠"` as 50) with single underscores between them.
pub(crate) fn parse_int_string(s: &str) -> Option<i64> {
    // Rust's `is_whitespace` (Unicode White_Space) is the set Python's `int()` strips.
    let t = s.trim_matches(|c: char| c.is_whitespace());
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits
            .chars()
            .all(|c| c == '_' || decimal_digit(c).is_some())
    {
        return None;
    }
    // Python refuses a string of more than 4,300 digits (`sys.int_info.default_max_str_digits`
    // since 3.11: ValueError, so Synapse refuses the level); up to that it reads any number of
    // digits: past i64, saturate (as the levels in numbers do) rather than refuse a value
    // Python takes.
    if digits.chars().filter(|c| *c != '_').count() > PYTHON_MAX_STR_DIGITS {
        return None;
    }
    let v = digits
        .chars()
        .filter_map(decimal_digit)
        .fold(0i128, |n, d| {
            n.saturating_mul(10).saturating_add(i128::from(d))
        });
    let v = if neg { -v } else { v };
    Some(v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// The creators of a room: the create event's `creator` (v1–10) or sender (v11+), plus
/// `additional_creators` in v12.
pub fn creators(create: Option<&Pdu>, version: &RoomVersion) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(create) = create else {
        return out;
    };
    if version.implicit_room_creator {
        out.insert(create.sender().to_owned());
    } else if let Some(c) = create.content().get_str("creator") {
        out.insert(c.to_owned());
    }
    if version.privileged_creators {
        if let Some(extra) = create
            .content()
            .get("additional_creators")
            .and_then(Value::as_array)
        {
            out.extend(extra.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    out
}

/// Why a power-level read failed: the event being authorised is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLevel;

/// `content[key]` when it is an object, `None` when absent; [`BadLevel`] for anything else,
/// where Synapse fails (`content.get(key, {}).get(…)`), so no level can be read.
fn container<'a>(content: &'a Object, key: &str) -> Result<Option<&'a Object>, BadLevel> {
    match content.get(key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(BadLevel),
    }
}

/// The power-level view of a room's state.
#[derive(Debug, Clone, Copy)]
pub struct Levels<'a> {
    version: &'static RoomVersion,
    pl: Option<&'a Object>,
    create: Option<&'a Pdu>,
}

impl<'a> Levels<'a> {
    /// Levels from the power-levels and create events in force.
    pub fn new(
        version: &'static RoomVersion,
        pl: Option<&'a Pdu>,
        create: Option<&'a Pdu>,
    ) -> Levels<'a> {
        Levels {
            version,
            pl: pl.map(Pdu::content),
            create,
        }
    }

    /// A named level (`ban`, `kick`, `redact`, `invite`, …) with its default.
    ///
    /// # Errors
    /// [`BadLevel`] when the value is present but not a level.
    pub fn named(&self, name: &str, default: i64) -> Result<i64, BadLevel> {
        match self.pl.and_then(|c| c.get(name)) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => level(v, self.version).ok_or(BadLevel),
        }
    }

    /// A user's level: infinite for v12 creators; `users[user]`, else `users_default`, with a
    /// power-levels event; 100 for the creator and 0 for everyone else without one.
    ///
    /// # Errors
    /// [`BadLevel`] for a malformed value.
    pub fn user(&self, user: &str) -> Result<i64, BadLevel> {
        if self.version.privileged_creators && creators(self.create, self.version).contains(user) {
            return Ok(CREATOR_POWER);
        }
        match self.pl {
            // A `null` entry is no entry (Synapse: `users.get(user)` is None either way).
            Some(c) => match container(c, "users")?.and_then(|u| u.get(user)) {
                None | Some(Value::Null) => self.named("users_default", 0),
                Some(v) => level(v, self.version).ok_or(BadLevel),
            },
            None => Ok(if creators(self.create, self.version).contains(user) {
                100
            } else {
                0
            }),
        }
    }

    /// The level needed to send an event of `kind` (state or not).
    ///
    /// # Errors
    /// [`BadLevel`] for a malformed value.
    pub fn send(&self, kind: &str, is_state: bool) -> Result<i64, BadLevel> {
        // A `null` entry is no entry: the default applies (Synapse: `events.get(type)` is None).
        let events = match self.pl {
            Some(c) => container(c, "events")?,
            None => None,
        };
        if let Some(v) = events
            .and_then(|e| e.get(kind))
            .filter(|v| !matches!(v, Value::Null))
        {
            return level(v, self.version).ok_or(BadLevel);
        }
        let (name, default) = if is_state {
            ("state_default", 50)
        } else {
            ("events_default", 0)
        };
        // Unlike the other named levels, a `null` default is not absent: Synapse reads it with
        // `content.get(name, default)` and fails on `int(None)`, so no send level can be read.
        match self.pl.and_then(|c| c.get(name)) {
            None => Ok(default),
            Some(v) => level(v, self.version).ok_or(BadLevel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{parse_object, ParseOptions};

    fn power_levels(content: &str, v: &'static RoomVersion) -> Pdu {
        let json = format!(
            r#"{{"type":"m.room.power_levels","state_key":"","sender":"@a:x","room_id":"!r:x","event_id":"$pl:x","content":{content}}}"#
        );
        Pdu::new(
            parse_object(json.as_bytes(), &ParseOptions::STRICT).unwrap(),
            v,
        )
        .unwrap()
    }

    /// A `null` under `users` or `events` is no entry: the default applies, as in Synapse
    /// (`users.get(user)` / `events.get(type)` give None either way).
    #[test]
    fn null_entries_read_as_absent() {
        let v = RoomVersion::get("1").unwrap();
        let pl = power_levels(
            r#"{"users":{"@b:x":null},"users_default":7,"events":{"m.room.message":null,"m.room.topic":null},"events_default":3}"#,
            v,
        );
        let levels = Levels::new(v, Some(&pl), None);
        assert_eq!(levels.user("@b:x"), Ok(7));
        assert_eq!(levels.send("m.room.message", false), Ok(3));
        assert_eq!(levels.send("m.room.topic", true), Ok(50));
    }

    /// A `null` `state_default` or `events_default` is no level (Synapse: `int(None)` fails when
    /// it reads the send level), unlike a `null` `ban` or `users_default`, which read as absent.
    #[test]
    fn null_send_defaults_are_bad_levels() {
        for id in ["1", "9"] {
            let v = RoomVersion::get(id).unwrap();
            let pl = power_levels(r#"{"state_default":null,"events_default":null}"#, v);
            let levels = Levels::new(v, Some(&pl), None);
            assert_eq!(levels.send("m.room.topic", true), Err(BadLevel));
            assert_eq!(levels.send("m.room.message", false), Err(BadLevel));
            let pl = power_levels(
                r#"{"state_default":null,"events_default":null,"events":{"m.room.topic":5,"m.room.message":6}}"#,
                v,
            );
            let levels = Levels::new(v, Some(&pl), None);
            assert_eq!(levels.send("m.room.topic", true), Ok(5));
            assert_eq!(levels.send("m.room.message", false), Ok(6));
            let pl = power_levels(r#"{"ban":null,"users_default":null}"#, v);
            let levels = Levels::new(v, Some(&pl), None);
            assert_eq!(levels.named("ban", 50), Ok(50));
            assert_eq!(levels.user("@b:x"), Ok(0));
            assert_eq!(levels.send("m.room.topic", true), Ok(50));
        }
    }

    /// `users` or `events` present but not an object: no level can be read (Synapse fails), so
    /// the event being authorised is rejected.
    #[test]
    fn non_object_containers_are_bad_levels() {
        let v = RoomVersion::get("1").unwrap();
        for content in [r#"{"users":5}"#, r#"{"users":null}"#, r#"{"users":[]}"#] {
            let pl = power_levels(content, v);
            let levels = Levels::new(v, Some(&pl), None);
            assert_eq!(levels.user("@b:x"), Err(BadLevel), "{content}");
        }
        for content in [
            r#"{"events":5}"#,
            r#"{"events":null}"#,
            r#"{"events":"abc"}"#,
        ] {
            let pl = power_levels(content, v);
            let levels = Levels::new(v, Some(&pl), None);
            assert_eq!(
                levels.send("m.room.message", false),
                Err(BadLevel),
                "{content}"
            );
        }
    }

    /// Every run in the table is ten digits valued 0–9, and the code point after a run's nine
    /// is not a digit unless another run starts there.
    #[test]
    fn decimal_digit_runs() {
        for z in DECIMAL_ZEROS {
            for d in 0..10u8 {
                let c = char::from_u32(u32::from(z) + u32::from(d)).unwrap();
                assert_eq!(decimal_digit(c), Some(d), "{c:?}");
            }
            let after = char::from_u32(u32::from(z) + 10).unwrap();
            assert_eq!(
                decimal_digit(after).is_some(),
                DECIMAL_ZEROS.contains(&after),
                "{after:?}"
            );
        }
        assert_eq!(decimal_digit('\u{2f}'), None);
        assert_eq!(decimal_digit('\u{10ffff}'), None);
    }

    #[test]
    fn python_int_strings() {
        for (s, v) in [
            (" 0100 ", Some(100)),
            ("+5", Some(5)),
            ("-7", Some(-7)),
            ("1_000", Some(1000)),
            // Up to 4,300 digits, as Python reads them (leading zeros and underscores
            // neither way); saturated past i64.
            (&"9".repeat(40), Some(i64::MAX)),
            (&"9".repeat(4300), Some(i64::MAX)),
            (&format!("-{}", "0".repeat(4299) + "7"), Some(-7)),
            (&format!("{}1", "1_".repeat(4299)), Some(i64::MAX)),
            (&format!("-{}", "1".repeat(60)), Some(i64::MIN)),
            // Decimal digits of any script, and whitespace as Python strips it.
            ("\u{665}\u{660}", Some(50)),
            ("\u{ff15}\u{ff10}", Some(50)),
            ("\u{1d7d3}", Some(5)),
            ("1_\u{665}", Some(15)),
            ("-\u{e55}\u{e50}", Some(-50)),
            ("\u{a0}\u{3000}50\u{2029}", Some(50)),
        ] {
            assert_eq!(parse_int_string(s), v, "{s}");
        }
        // Past 4,300 digits Python raises ValueError (3.11+), also for leading zeros.
        for s in ["9".repeat(4301), "0".repeat(4301), "\u{665}".repeat(4301)] {
            assert_eq!(parse_int_string(&s), None, "{} digits", s.chars().count());
        }
        for s in [
            "",
            "1.5",
            "abc",
            "_1",
            "1__0",
            "+",
            "1e3",
            // Not decimal digits (No/Nl, not Nd), not Python whitespace, not an ASCII sign.
            "\u{b2}",
            "\u{2167}",
            "\u{1c}5",
            "5\u{200b}",
            "\u{2212}5",
        ] {
            assert_eq!(parse_int_string(s), None, "{s}");
        }
    }
}
