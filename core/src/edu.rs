//! EDUs, the ephemeral data units of a transaction ([spec § EDUs], DIGEST §15): typed, validated,
//! and lossless.
//!
//! Each typed EDU is a validated wrapper around its original `content` [`Object`]: validation
//! happens once, when it is built or parsed, and the accessors read the object. So unknown fields
//! survive untouched and an EDU renders back byte for byte to what was received (canonically
//! encoded); there is no second copy of the data to drift out of sync.
//!
//! What is checked: the fields each EDU type requires are present with the right JSON type, and
//! every user ID parses ([`crate::identifiers`]). Where the spec and Synapse differ, we accept
//! what Synapse accepts, because a peer's EDU that Synapse takes and we refuse is a silent interop
//! failure; each type's docs say which way each field went. Whether the users belong to the
//! sending server is a separate check, [`Edu::check_origin`], because the parser does not know who
//! authenticated the request.
//!
//! What is deliberately not here: acting on an EDU (that is the host's job), and ACL or room
//! membership checks (they need state).
//!
//! ```
//! use mxfed_core::canonical::{parse_object, ParseOptions};
//! use mxfed_core::edu::Edu;
//!
//! let raw = parse_object(
//!     br#"{"edu_type":"m.typing","content":{"room_id":"!r:a","user_id":"@u:a","typing":true,"x":1}}"#,
//!     &ParseOptions::LEGACY,
//! ).unwrap();
//! let edu = Edu::from_object(&raw).unwrap();
//! let Edu::Typing(t) = &edu else { unreachable!() };
//! assert!(t.typing() && t.user_id() == "@u:a");
//! assert_eq!(edu.to_object(), raw); // the unknown field "x" survives
//! assert!(edu.check_origin("a").is_ok() && edu.check_origin("b").is_err());
//! ```
//!
//! [spec § EDUs]: https://spec.matrix.org/latest/server-server-api/#edus

use crate::canonical::{Int, Object, Value};
use crate::identifiers::user_server_name;

/// `m.typing`.
pub const TYPING: &str = "m.typing";
/// `m.receipt`.
pub const RECEIPT: &str = "m.receipt";
/// `m.presence`.
pub const PRESENCE: &str = "m.presence";
/// `m.device_list_update`.
pub const DEVICE_LIST_UPDATE: &str = "m.device_list_update";
/// `m.signing_key_update`.
pub const SIGNING_KEY_UPDATE: &str = "m.signing_key_update";
/// `m.direct_to_device`.
pub const DIRECT_TO_DEVICE: &str = "m.direct_to_device";

/// Why an EDU is malformed. Paths are JSON pointers from the EDU envelope, e.g.
/// `/content/push/0/user_id`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EduError {
    /// The EDU (or its envelope) is not a JSON object.
    #[error("EDU is {found}, not an object")]
    NotObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// A required field is absent.
    #[error("EDU field `{field}` is missing")]
    MissingField {
        /// Where.
        field: String,
    },
    /// A field has the wrong JSON type or shape.
    #[error("EDU field `{field}` must be {expected}, found {found}")]
    WrongType {
        /// Where.
        field: String,
        /// What it must be.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A user ID that is not `@localpart:server_name`.
    #[error("EDU field `{field}` holds an invalid user ID {user_id:?}")]
    BadUserId {
        /// Where.
        field: String,
        /// The value.
        user_id: String,
    },
    /// A user ID from a server other than the one that sent the transaction.
    #[error("user {user_id:?} does not belong to the sending server {origin:?}")]
    ForeignUser {
        /// The user.
        user_id: String,
        /// The authenticated origin.
        origin: String,
    },
}

impl EduError {
    /// The stable error code shared by every host.
    pub fn code(&self) -> &'static str {
        match self {
            EduError::NotObject { .. } => "edu_not_object",
            EduError::MissingField { .. } => "edu_missing_field",
            EduError::WrongType { .. } => "edu_wrong_type",
            EduError::BadUserId { .. } => "edu_bad_user_id",
            EduError::ForeignUser { .. } => "edu_foreign_user",
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Validation helpers. `base` is the JSON pointer of the object being checked.
// ------------------------------------------------------------------------------------------------

const CONTENT: &str = "/content";

/// What accessors fall back to (never reached: validation guarantees the field).
static EMPTY_OBJECT: Object = Object::new();

/// `base` + `/key`, escaped as RFC 6901 asks (`~` → `~0`, `/` → `~1`).
fn ptr(base: &str, key: &str) -> String {
    let mut s = String::with_capacity(base.len() + key.len() + 1);
    s.push_str(base);
    s.push('/');
    for c in key.chars() {
        match c {
            '~' => s.push_str("~0"),
            '/' => s.push_str("~1"),
            c => s.push(c),
        }
    }
    s
}

fn wrong(field: String, expected: &'static str, found: &Value) -> EduError {
    EduError::WrongType {
        field,
        expected,
        found: found.kind(),
    }
}

fn req<'a>(o: &'a Object, key: &str, base: &str) -> Result<&'a Value, EduError> {
    o.get(key).ok_or_else(|| EduError::MissingField {
        field: ptr(base, key),
    })
}

/// The value under `key`, treating JSON `null` as absent (how Synapse's `.get()` reads it).
fn opt<'a>(o: &'a Object, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !matches!(v, Value::Null))
}

fn req_str<'a>(o: &'a Object, key: &str, base: &str) -> Result<&'a str, EduError> {
    let v = req(o, key, base)?;
    v.as_str()
        .ok_or_else(|| wrong(ptr(base, key), "a string", v))
}

fn check_user(user_id: &str, field: impl FnOnce() -> String) -> Result<(), EduError> {
    user_server_name(user_id)
        .map(|_| ())
        .map_err(|_| EduError::BadUserId {
            field: field(),
            user_id: user_id.to_owned(),
        })
}

fn req_user<'a>(o: &'a Object, key: &str, base: &str) -> Result<&'a str, EduError> {
    let u = req_str(o, key, base)?;
    check_user(u, || ptr(base, key))?;
    Ok(u)
}

/// Whether Python would read the value as true, as Synapse reads flags it only tests with `if`:
/// `false`, `null`, zero, `""`, `[]` and `{}` are false, anything else true.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => i.get() != 0,
        Value::Legacy(n) => n.as_f64().is_none_or(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn req_object<'a>(o: &'a Object, key: &str, base: &str) -> Result<&'a Object, EduError> {
    let v = req(o, key, base)?;
    v.as_object()
        .ok_or_else(|| wrong(ptr(base, key), "an object", v))
}

/// Optional field (absent or `null` allowed) that must satisfy `ok` when present.
fn opt_check(
    o: &Object,
    key: &str,
    base: &str,
    expected: &'static str,
    ok: impl FnOnce(&Value) -> bool,
) -> Result<(), EduError> {
    match opt(o, key) {
        Some(v) if !ok(v) => Err(wrong(ptr(base, key), expected, v)),
        _ => Ok(()),
    }
}

fn is_int_or_str(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::String(_))
}

fn int_or_str_text(v: &Value) -> String {
    match v {
        Value::Int(i) => i.get().to_string(),
        Value::String(s) => s.clone(),
        other => other.to_canonical_string(),
    }
}

fn same_origin(user_id: &str, origin: &str) -> Result<(), EduError> {
    match user_server_name(user_id) {
        Ok(server) if server == origin => Ok(()),
        _ => Err(EduError::ForeignUser {
            user_id: user_id.to_owned(),
            origin: origin.to_owned(),
        }),
    }
}

// ------------------------------------------------------------------------------------------------
// m.typing
// ------------------------------------------------------------------------------------------------

/// `m.typing`: `{"room_id", "user_id", "typing"}`, all three required (spec and Synapse
/// agree). The spec makes `typing` a boolean; Synapse only tests it with `if`, so any value is
/// accepted here and read the same way ([`Typing::typing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing {
    content: Object,
}

impl Typing {
    /// A typing notification.
    ///
    /// # Errors
    /// [`EduError::BadUserId`] for a malformed `user_id`.
    pub fn new(room_id: &str, user_id: &str, typing: bool) -> Result<Typing, EduError> {
        let mut c = Object::new();
        c.insert("room_id", room_id);
        c.insert("typing", typing);
        c.insert("user_id", user_id);
        Typing::from_content(c)
    }

    /// Validates a received `content`.
    ///
    /// # Errors
    /// A missing field, a wrong type, or a malformed user ID.
    pub fn from_content(content: Object) -> Result<Typing, EduError> {
        req_str(&content, "room_id", CONTENT)?;
        req_user(&content, "user_id", CONTENT)?;
        req(&content, "typing", CONTENT)?;
        Ok(Typing { content })
    }

    /// The room.
    pub fn room_id(&self) -> &str {
        self.content.get_str("room_id").unwrap_or_default()
    }

    /// The user.
    pub fn user_id(&self) -> &str {
        self.content.get_str("user_id").unwrap_or_default()
    }

    /// Whether the user is typing: `typing` read as Python reads a condition (`true`, but also
    /// `1` or `"yes"`; `false`, `null`, `0`, `""`, `[]` and `{}` say not), as Synapse reads it.
    pub fn typing(&self) -> bool {
        self.content.get("typing").is_some_and(truthy)
    }

    /// The content, as received or built.
    pub fn content(&self) -> &Object {
        &self.content
    }
}

// ------------------------------------------------------------------------------------------------
// m.receipt
// ------------------------------------------------------------------------------------------------

/// One receipt: what `content[room_id][receipt_type][user_id]` holds.
///
/// The receipt object is `{"event_ids": [...], "data": {"ts", "thread_id"?, ...}}`. `event_ids`
/// is required, a non-empty list of strings (the spec says exactly one; Synapse takes any list).
/// `data` is optional (the spec requires it with `ts`; Synapse defaults it to `{}`), and an
/// object when present. `data.thread_id` is a string when it names a thread; any other value is
/// taken as no thread ([`ReceiptEntry::thread_id`] is `None`), as Synapse takes it, rather than
/// refusing the whole EDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptEntry {
    room_id: String,
    receipt_type: String,
    user_id: String,
    receipt: Object,
}

impl ReceiptEntry {
    /// A receipt for one event, with `data.ts` and an optional thread.
    ///
    /// # Errors
    /// [`EduError::BadUserId`] for a malformed `user_id`.
    pub fn new(
        room_id: &str,
        receipt_type: &str,
        user_id: &str,
        event_id: &str,
        ts: i64,
        thread_id: Option<&str>,
    ) -> Result<ReceiptEntry, EduError> {
        let mut data = Object::new();
        data.insert("ts", Int::saturating(ts));
        if let Some(t) = thread_id {
            data.insert("thread_id", t);
        }
        let mut receipt = Object::new();
        receipt.insert("data", data);
        receipt.insert("event_ids", vec![Value::from(event_id)]);
        ReceiptEntry::from_parts(room_id, receipt_type, user_id, receipt)
    }

    /// Validates a receipt object found under `room_id`/`receipt_type`/`user_id`.
    ///
    /// # Errors
    /// A malformed user ID or receipt object.
    pub fn from_parts(
        room_id: &str,
        receipt_type: &str,
        user_id: &str,
        receipt: Object,
    ) -> Result<ReceiptEntry, EduError> {
        ReceiptEntry::check(room_id, receipt_type, user_id, &receipt)?;
        Ok(ReceiptEntry {
            room_id: room_id.to_owned(),
            receipt_type: receipt_type.to_owned(),
            user_id: user_id.to_owned(),
            receipt,
        })
    }

    fn check(
        room_id: &str,
        receipt_type: &str,
        user_id: &str,
        receipt: &Object,
    ) -> Result<(), EduError> {
        let base = ptr(&ptr(&ptr(CONTENT, room_id), receipt_type), user_id);
        check_user(user_id, || base.clone())?;
        let ids = req(receipt, "event_ids", &base)?;
        let ok = ids
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|v| v.as_str().is_some()));
        if !ok {
            return Err(wrong(
                ptr(&base, "event_ids"),
                "a non-empty array of event ID strings",
                ids,
            ));
        }
        if let Some(data) = receipt.get("data") {
            if data.as_object().is_none() {
                return Err(wrong(ptr(&base, "data"), "an object", data));
            }
        }
        Ok(())
    }

    /// The room.
    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The receipt type, e.g. `m.read`.
    pub fn receipt_type(&self) -> &str {
        &self.receipt_type
    }

    /// The user.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The event IDs (normally one).
    pub fn event_ids(&self) -> impl Iterator<Item = &str> {
        self.receipt
            .get("event_ids")
            .and_then(Value::as_array)
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
    }

    /// `data`, when present.
    pub fn data(&self) -> Option<&Object> {
        self.receipt.get_object("data")
    }

    /// `data.ts`, when present and an integer.
    pub fn ts(&self) -> Option<i64> {
        self.data()
            .and_then(|d| d.get("ts"))
            .and_then(Value::as_int)
    }

    /// `data.thread_id`, when it is a string (threaded receipts, spec v1.4); `None` for no
    /// thread, which another value (a number, say) also means.
    pub fn thread_id(&self) -> Option<&str> {
        self.data().and_then(|d| d.get_str("thread_id"))
    }

    /// The receipt object, as received or built.
    pub fn receipt(&self) -> &Object {
        &self.receipt
    }
}

/// `m.receipt`: `{room_id: {receipt_type: {user_id: {"event_ids", "data"}}}}`.
///
/// Every level must be an object; see [`ReceiptEntry`] for what each receipt must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    content: Object,
}

impl Receipt {
    /// Validates a received `content`.
    ///
    /// # Errors
    /// A level that is not an object, a malformed user ID or receipt object.
    pub fn from_content(content: Object) -> Result<Receipt, EduError> {
        for (room_id, types) in content.iter() {
            let base = ptr(CONTENT, room_id);
            let types = types
                .as_object()
                .ok_or_else(|| wrong(base.clone(), "an object of receipt types", types))?;
            for (rtype, users) in types.iter() {
                let tbase = ptr(&base, rtype);
                let users = users
                    .as_object()
                    .ok_or_else(|| wrong(tbase.clone(), "an object of users", users))?;
                for (user_id, receipt) in users.iter() {
                    let receipt = receipt
                        .as_object()
                        .ok_or_else(|| wrong(ptr(&tbase, user_id), "an object", receipt))?;
                    ReceiptEntry::check(room_id, rtype, user_id, receipt)?;
                }
            }
        }
        Ok(Receipt { content })
    }

    /// Builds the content from receipts. One content holds one receipt per (room, receipt
    /// type, user): a later entry for the same three replaces an earlier one.
    pub fn from_entries(entries: impl IntoIterator<Item = ReceiptEntry>) -> Receipt {
        let mut content = Object::new();
        for e in entries {
            let users = content
                .object_entry(&e.room_id)
                .and_then(|types| types.object_entry(&e.receipt_type));
            // Only this function builds `content`, and only with objects at these levels.
            if let Some(users) = users {
                users.insert(e.user_id, e.receipt);
            }
        }
        Receipt { content }
    }

    /// Every receipt, in (room, receipt type, user) order.
    pub fn entries(&self) -> Vec<ReceiptEntry> {
        let mut out = Vec::new();
        for (room_id, types) in self.content.iter() {
            for (rtype, users) in types.as_object().into_iter().flat_map(Object::iter) {
                for (user_id, receipt) in users.as_object().into_iter().flat_map(Object::iter) {
                    if let Some(receipt) = receipt.as_object() {
                        out.push(ReceiptEntry {
                            room_id: room_id.to_owned(),
                            receipt_type: rtype.to_owned(),
                            user_id: user_id.to_owned(),
                            receipt: receipt.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every user ID the EDU speaks for.
    fn user_ids(&self) -> Vec<&str> {
        self.content
            .values()
            .filter_map(Value::as_object)
            .flat_map(Object::values)
            .filter_map(Value::as_object)
            .flat_map(Object::keys)
            .collect()
    }

    /// The content, as received or built.
    pub fn content(&self) -> &Object {
        &self.content
    }
}

// ------------------------------------------------------------------------------------------------
// m.presence
// ------------------------------------------------------------------------------------------------

/// One entry of an `m.presence` EDU's `push` list.
///
/// `user_id` (a valid user ID) and `presence` (a string; values beyond
/// `online`/`unavailable`/`offline` are kept, as Synapse keeps them) are required.
/// `last_active_ago` is required by the spec but optional in Synapse, so optional here; when
/// present it is an integer. `status_msg` is a string and `currently_active` a boolean when
/// present; `null` counts as absent for all three.
///
/// In a received EDU, an entry without a user or without a presence state (absent, `null`, `""`
/// or another value Python reads as false) is skipped, as Synapse skips it, not an error:
/// [`Presence::updates`] leaves it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceUpdate {
    entry: Object,
}

impl PresenceUpdate {
    /// A presence update.
    ///
    /// # Errors
    /// [`EduError::BadUserId`] for a malformed `user_id`.
    pub fn new(
        user_id: &str,
        presence: &str,
        last_active_ago: Option<u64>,
    ) -> Result<PresenceUpdate, EduError> {
        let mut e = Object::new();
        e.insert("presence", presence);
        e.insert("user_id", user_id);
        if let Some(ago) = last_active_ago {
            e.insert(
                "last_active_ago",
                Int::saturating(i64::try_from(ago).unwrap_or(i64::MAX)),
            );
        }
        PresenceUpdate::from_object(e)
    }

    /// Adds or replaces `status_msg`.
    pub fn with_status_msg(mut self, msg: &str) -> PresenceUpdate {
        self.entry.insert("status_msg", msg);
        self
    }

    /// Adds or replaces `currently_active`.
    pub fn with_currently_active(mut self, active: bool) -> PresenceUpdate {
        self.entry.insert("currently_active", active);
        self
    }

    /// Validates one `push` entry.
    ///
    /// # Errors
    /// A missing field, a wrong type or a malformed user ID.
    pub fn from_object(entry: Object) -> Result<PresenceUpdate, EduError> {
        PresenceUpdate::check(&entry, "/content/push/0")?;
        Ok(PresenceUpdate { entry })
    }

    /// Whether Synapse acts on a received entry, and if so whether it is well formed. Synapse
    /// skips an entry without a user or a presence state (read as Python reads a condition), but
    /// parses the user ID of one it skips for want of a state (a malformed one fails the EDU).
    fn check_received(e: &Object, base: &str) -> Result<bool, EduError> {
        let Some(user) = e.get("user_id").filter(|u| truthy(u)) else {
            return Ok(false);
        };
        let user = user
            .as_str()
            .ok_or_else(|| wrong(ptr(base, "user_id"), "a string", user))?;
        check_user(user, || ptr(base, "user_id"))?;
        if !PresenceUpdate::acted_on(e) {
            return Ok(false);
        }
        PresenceUpdate::check(e, base)?;
        Ok(true)
    }

    /// Whether a received entry names a user and a presence state (see [`Presence::updates`]).
    fn acted_on(e: &Object) -> bool {
        e.get("user_id").is_some_and(truthy) && e.get("presence").is_some_and(truthy)
    }

    fn check(e: &Object, base: &str) -> Result<(), EduError> {
        req_user(e, "user_id", base)?;
        req_str(e, "presence", base)?;
        opt_check(e, "last_active_ago", base, "an integer", |v| {
            v.as_int().is_some()
        })?;
        opt_check(e, "status_msg", base, "a string", |v| v.as_str().is_some())?;
        opt_check(e, "currently_active", base, "a boolean", |v| {
            matches!(v, Value::Bool(_))
        })
    }

    /// The user.
    pub fn user_id(&self) -> &str {
        self.entry.get_str("user_id").unwrap_or_default()
    }

    /// `online`, `unavailable`, `offline` (or whatever the peer sent).
    pub fn presence(&self) -> &str {
        self.entry.get_str("presence").unwrap_or_default()
    }

    /// Milliseconds since the user was last active, when given.
    pub fn last_active_ago(&self) -> Option<i64> {
        self.entry.get("last_active_ago").and_then(Value::as_int)
    }

    /// The status message, when given.
    pub fn status_msg(&self) -> Option<&str> {
        self.entry.get_str("status_msg")
    }

    /// Whether the user is currently active, when given.
    pub fn currently_active(&self) -> Option<bool> {
        match self.entry.get("currently_active") {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The entry object, as received or built.
    pub fn as_object(&self) -> &Object {
        &self.entry
    }
}

/// `m.presence`: `{"push": [<PresenceUpdate>, ...]}`. `push` is required and must be a list
/// (Synapse would read a missing `push` as empty; an EDU with nothing in it is a malformed EDU).
/// Each entry is an object; one without a user or a presence state is skipped
/// ([`PresenceUpdate`]), the others must be well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    content: Object,
}

impl Presence {
    /// Validates a received `content`.
    ///
    /// # Errors
    /// `push` missing or not a list, or a malformed entry.
    pub fn from_content(content: Object) -> Result<Presence, EduError> {
        let push = req(&content, "push", CONTENT)?;
        let items = push
            .as_array()
            .ok_or_else(|| wrong(ptr(CONTENT, "push"), "an array", push))?;
        for (i, item) in items.iter().enumerate() {
            let base = format!("/content/push/{i}");
            let e = item
                .as_object()
                .ok_or_else(|| wrong(base.clone(), "an object", item))?;
            PresenceUpdate::check_received(e, &base)?;
        }
        Ok(Presence { content })
    }

    /// Builds the content from updates, in order.
    pub fn from_updates(updates: impl IntoIterator<Item = PresenceUpdate>) -> Presence {
        let push: Vec<Value> = updates.into_iter().map(|u| u.entry.into()).collect();
        let mut content = Object::new();
        content.insert("push", push);
        Presence { content }
    }

    /// The updates, in order: every entry but those without a user or a presence state, which
    /// are skipped (as Synapse skips them).
    pub fn updates(&self) -> Vec<PresenceUpdate> {
        self.push()
            .iter()
            .filter_map(Value::as_object)
            .filter(|e| PresenceUpdate::acted_on(e))
            .map(|e| PresenceUpdate { entry: e.clone() })
            .collect()
    }

    fn push(&self) -> &[Value] {
        self.content
            .get("push")
            .and_then(Value::as_array)
            .unwrap_or_default()
    }

    /// The content, as received or built.
    pub fn content(&self) -> &Object {
        &self.content
    }
}

// ------------------------------------------------------------------------------------------------
// m.device_list_update
// ------------------------------------------------------------------------------------------------

/// `m.device_list_update`: `{"user_id", "device_id", "stream_id", "prev_id"?, "deleted"?,
/// "device_display_name"?, "keys"?}`.
///
/// `user_id`, `device_id` and `stream_id` are required. As in Synapse, `stream_id` and each
/// `prev_id` item may be an integer or a string, and `prev_id` when present must be a list
/// (`null` included: Synapse rejects it too). `deleted` is a boolean, `device_display_name` a
/// string and `keys` an object when present (`null` allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceListUpdate {
    content: Object,
}

impl DeviceListUpdate {
    /// A device list update.
    ///
    /// # Errors
    /// [`EduError::BadUserId`] for a malformed `user_id`.
    pub fn new(
        user_id: &str,
        device_id: &str,
        stream_id: i64,
        prev_ids: &[i64],
    ) -> Result<DeviceListUpdate, EduError> {
        let mut c = Object::new();
        c.insert("device_id", device_id);
        c.insert(
            "prev_id",
            prev_ids
                .iter()
                .map(|p| Value::Int(Int::saturating(*p)))
                .collect::<Vec<_>>(),
        );
        c.insert("stream_id", Int::saturating(stream_id));
        c.insert("user_id", user_id);
        DeviceListUpdate::from_content(c)
    }

    /// Validates a received `content`.
    ///
    /// # Errors
    /// A missing field, a wrong type or a malformed user ID.
    pub fn from_content(content: Object) -> Result<DeviceListUpdate, EduError> {
        req_user(&content, "user_id", CONTENT)?;
        req_str(&content, "device_id", CONTENT)?;
        let sid = req(&content, "stream_id", CONTENT)?;
        if !is_int_or_str(sid) {
            return Err(wrong(
                ptr(CONTENT, "stream_id"),
                "an integer or a string",
                sid,
            ));
        }
        if let Some(prev) = content.get("prev_id") {
            let ok = prev.as_array().is_some_and(|a| a.iter().all(is_int_or_str));
            if !ok {
                return Err(wrong(
                    ptr(CONTENT, "prev_id"),
                    "an array of integers or strings",
                    prev,
                ));
            }
        }
        opt_check(&content, "deleted", CONTENT, "a boolean", |v| {
            matches!(v, Value::Bool(_))
        })?;
        opt_check(&content, "device_display_name", CONTENT, "a string", |v| {
            v.as_str().is_some()
        })?;
        opt_check(&content, "keys", CONTENT, "an object", |v| {
            v.as_object().is_some()
        })?;
        Ok(DeviceListUpdate { content })
    }

    /// The user whose device changed.
    pub fn user_id(&self) -> &str {
        self.content.get_str("user_id").unwrap_or_default()
    }

    /// The device.
    pub fn device_id(&self) -> &str {
        self.content.get_str("device_id").unwrap_or_default()
    }

    /// The stream ID as text (Synapse stores `str(stream_id)`: ints and strings both occur).
    pub fn stream_id(&self) -> String {
        self.content
            .get("stream_id")
            .map(int_or_str_text)
            .unwrap_or_default()
    }

    /// The previous stream IDs as text.
    pub fn prev_ids(&self) -> Vec<String> {
        self.content
            .get("prev_id")
            .and_then(Value::as_array)
            .unwrap_or_default()
            .iter()
            .map(int_or_str_text)
            .collect()
    }

    /// Whether the device was deleted.
    pub fn deleted(&self) -> bool {
        matches!(self.content.get("deleted"), Some(Value::Bool(true)))
    }

    /// The device's display name, when given.
    pub fn device_display_name(&self) -> Option<&str> {
        self.content.get_str("device_display_name")
    }

    /// The device keys, when given.
    pub fn keys(&self) -> Option<&Object> {
        self.content.get_object("keys")
    }

    /// The content, as received or built.
    pub fn content(&self) -> &Object {
        &self.content
    }
}

// ------------------------------------------------------------------------------------------------
// m.signing_key_update
// ------------------------------------------------------------------------------------------------

/// `m.signing_key_update`: `{"user_id", "master_key"?, "self_signing_key"?}`. The keys, when
/// present and not `null`, are objects (their inner shape is the device-keys logic's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyUpdate {
    content: Object,
}

impl SigningKeyUpdate {
    /// A cross-signing key update.
    ///
    /// # Errors
    /// [`EduError::BadUserId`] for a malformed `user_id`.
    pub fn new(
        user_id: &str,
        master_key: Option<Object>,
        self_signing_key: Option<Object>,
    ) -> Result<SigningKeyUpdate, EduError> {
        let mut c = Object::new();
        c.insert("user_id", user_id);
        if let Some(k) = master_key {
            c.insert("master_key", k);
        }
        if let Some(k) = self_signing_key {
            c.insert("self_signing_key", k);
        }
        SigningKeyUpdate::from_content(c)
    }

    /// Validates a received `content`.
    ///
    /// # Errors
    /// A missing field, a wrong type or a malformed user ID.
    pub fn from_content(content: Object) -> Result<SigningKeyUpdate, EduError> {
        req_user(&content, "user_id", CONTENT)?;
        for key in ["master_key", "self_signing_key"] {
            opt_check(&content, key, CONTENT, "an object", |v| {
                v.as_object().is_some()
            })?;
        }
        Ok(SigningKeyUpdate { content })
    }

    /// The user.
    pub fn user_id(&self) -> &str {
        self.content.get_str("user_id").unwrap_or_default()
    }

    /// The master key, when given.
    pub fn master_key(&self) -> Option<&Object> {
        self.content.get_object("master_key")
    }

    /// The self-signing key, when given.
    pub fn self_signing_key(&self) -> Option<&Object> {
        self.content.get_object("self_signing_key")
    }

    /// The content, as received or built.
    pub fn content(&self) -> &Object {
        &self.content
    }
}

// ------------------------------------------------------------------------------------------------
// m.direct_to_device
// ------------------------------------------------------------------------------------------------

/// `m.direct_to_device`: `{"sender", "type", "message_id", "messages": {user_id: {device_id |
/// "*": {content}}}}`, all required. Every user ID (sender and recipients) must parse; each
/// message must be an object. The spec's 32-code-point limit on `message_id` is not enforced:
/// Synapse does not enforce it either, and refusing a reliable EDU over it would lose a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectToDevice {
    content: Object,
}

impl DirectToDevice {
    /// A to-device message batch.
    ///
    /// # Errors
    /// A malformed sender, recipient user ID or message.
    pub fn new(
        sender: &str,
        event_type: &str,
        message_id: &str,
        messages: Object,
    ) -> Result<DirectToDevice, EduError> {
        let mut c = Object::new();
        c.insert("message_id", message_id);
        c.insert("messages", messages);
        c.insert("sender", sender);
        c.insert("type", event_type);
        DirectToDevice::from_content(c)
    }

    /// Validates a received `content`.
    ///
    /// # Errors
    /// A missing field, a wrong type or a malformed user ID.
    pub fn from_content(content: Object) -> Result<DirectToDevice, EduError> {
        req_user(&content, "sender", CONTENT)?;
        req_str(&content, "type", CONTENT)?;
        req_str(&content, "message_id", CONTENT)?;
        let messages = req_object(&content, "messages", CONTENT)?;
        let base = ptr(CONTENT, "messages");
        for (user_id, devices) in messages.iter() {
            let ubase = ptr(&base, user_id);
            check_user(user_id, || ubase.clone())?;
            let devices = devices
                .as_object()
                .ok_or_else(|| wrong(ubase.clone(), "an object of devices", devices))?;
            for (device, msg) in devices.iter() {
                if msg.as_object().is_none() {
                    return Err(wrong(ptr(&ubase, device), "an object", msg));
                }
            }
        }
        Ok(DirectToDevice { content })
    }

    /// The sending user.
    pub fn sender(&self) -> &str {
        self.content.get_str("sender").unwrap_or_default()
    }

    /// The to-device event type, e.g. `m.room_key_request`.
    pub fn event_type(&self) -> &str {
        self.content.get_str("type").unwrap_or_default()
    }

    /// The sender's de-duplication ID.
    pub fn message_id(&self) -> &str {
        self.content.get_str("message_id").unwrap_or_default()
    }

    /// `{user_id: {device_id | "*": content}}`.
    pub fn messages(&self) -> &Object {
        self.content.get_object("messages").unwrap_or(&EMPTY_OBJECT)
    }

    /// The same batch with only the messages for the users `keep` accepts, or `None` when no
    /// message is left: what a server keeps of a batch, the messages for its own users. A user
    /// with no device named gets nothing, and is left out (as Synapse skips one).
    ///
    /// ```
    /// use mxfed_core::canonical::{parse_object, ParseOptions};
    /// use mxfed_core::edu::DirectToDevice;
    /// let messages = parse_object(br#"{"@a:us":{"D":{}},"@b:them":{"E":{}},"@c:us":{}}"#, &ParseOptions::STRICT).unwrap();
    /// let d = DirectToDevice::new("@s:them", "m.x", "id1", messages).unwrap();
    /// let ours = d.only_for(|u| u.ends_with(":us")).unwrap();
    /// assert_eq!(ours.messages().keys().collect::<Vec<_>>(), ["@a:us"]);
    /// assert_eq!((ours.sender(), ours.message_id()), ("@s:them", "id1"));
    /// assert!(d.only_for(|u| u == "@c:us").is_none());
    /// ```
    pub fn only_for(&self, mut keep: impl FnMut(&str) -> bool) -> Option<DirectToDevice> {
        let messages: Object = self
            .messages()
            .iter()
            .filter(|(user, devices)| {
                devices.as_object().is_some_and(|d| !d.is_empty()) && keep(user)
            })
            .map(|(user, devices)| (user.to_owned(), devices.clone()))
            .collect();
        if messages.is_empty() {
            return None;
        }
        let mut content: Object = self
            .content
            .iter()
            .filter(|(k, _)| *k != "messages")
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        content.insert("messages", messages);
        Some(DirectToDevice { content })
    }

    /// Every (user, device or `*`, message content), in order.
    pub fn recipients(&self) -> impl Iterator<Item = (&str, &str, &Object)> {
        self.messages().iter().flat_map(|(user, devices)| {
            devices
                .as_object()
                .into_iter()
                .flat_map(Object::iter)
                .filter_map(move |(device, msg)| msg.as_object().map(|m| (user, device, m)))
        })
    }

    /// The content, as received or built.
    pub fn content(&self) -> &Object {
        &self.content
    }
}

// ------------------------------------------------------------------------------------------------
// The EDU enum
// ------------------------------------------------------------------------------------------------

/// An EDU: a typed variant per known `edu_type`, or [`Edu::Unknown`] passed through untouched.
///
/// Rendering ([`Edu::to_object`]) gives `{"content": …, "edu_type": …}`. The content is the one
/// received, so it is byte-identical after canonical encoding. Other keys in the envelope are
/// not part of the spec (old Synapse versions sent `origin` and `destination` there, which no
/// receiver reads) and are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Edu {
    /// `m.typing`.
    Typing(Typing),
    /// `m.receipt`.
    Receipt(Receipt),
    /// `m.presence`.
    Presence(Presence),
    /// `m.device_list_update` (reliable).
    DeviceListUpdate(DeviceListUpdate),
    /// `m.signing_key_update` (reliable).
    SigningKeyUpdate(SigningKeyUpdate),
    /// `m.direct_to_device` (reliable).
    DirectToDevice(DirectToDevice),
    /// Any other type, kept as received. Only `content` being an object is checked. An `Unknown`
    /// built by hand with a known type name skips validation and counts as ephemeral.
    Unknown {
        /// The `edu_type`.
        edu_type: String,
        /// The content.
        content: Object,
    },
}

impl Edu {
    /// Parses an EDU envelope `{"edu_type", "content"}`, cloning the content.
    ///
    /// # Errors
    /// [`EduError`]: no `edu_type`, `content` not an object, or a malformed known EDU.
    pub fn from_object(edu: &Object) -> Result<Edu, EduError> {
        Edu::from_value(Value::Object(edu.clone()))
    }

    /// Parses an EDU envelope, taking ownership (no copy of the content).
    ///
    /// # Errors
    /// As [`Edu::from_object`], plus [`EduError::NotObject`].
    pub fn from_value(edu: Value) -> Result<Edu, EduError> {
        let mut env = match edu {
            Value::Object(o) => o,
            other => {
                return Err(EduError::NotObject {
                    found: other.kind(),
                })
            }
        };
        let edu_type = req_str(&env, "edu_type", "")?.to_owned();
        let content = match env.remove("content") {
            Some(Value::Object(c)) => c,
            Some(other) => return Err(wrong("/content".into(), "an object", &other)),
            None => {
                return Err(EduError::MissingField {
                    field: "/content".into(),
                })
            }
        };
        Edu::from_parts(&edu_type, content)
    }

    /// Builds an EDU from its type and content, validating known types.
    ///
    /// # Errors
    /// A malformed known EDU.
    pub fn from_parts(edu_type: &str, content: Object) -> Result<Edu, EduError> {
        Ok(match edu_type {
            TYPING => Edu::Typing(Typing::from_content(content)?),
            RECEIPT => Edu::Receipt(Receipt::from_content(content)?),
            PRESENCE => Edu::Presence(Presence::from_content(content)?),
            DEVICE_LIST_UPDATE => Edu::DeviceListUpdate(DeviceListUpdate::from_content(content)?),
            SIGNING_KEY_UPDATE => Edu::SigningKeyUpdate(SigningKeyUpdate::from_content(content)?),
            DIRECT_TO_DEVICE => Edu::DirectToDevice(DirectToDevice::from_content(content)?),
            _ => Edu::Unknown {
                edu_type: edu_type.to_owned(),
                content,
            },
        })
    }

    /// The `edu_type`.
    pub fn edu_type(&self) -> &str {
        match self {
            Edu::Typing(_) => TYPING,
            Edu::Receipt(_) => RECEIPT,
            Edu::Presence(_) => PRESENCE,
            Edu::DeviceListUpdate(_) => DEVICE_LIST_UPDATE,
            Edu::SigningKeyUpdate(_) => SIGNING_KEY_UPDATE,
            Edu::DirectToDevice(_) => DIRECT_TO_DEVICE,
            Edu::Unknown { edu_type, .. } => edu_type,
        }
    }

    /// The content.
    pub fn content(&self) -> &Object {
        match self {
            Edu::Typing(e) => e.content(),
            Edu::Receipt(e) => e.content(),
            Edu::Presence(e) => e.content(),
            Edu::DeviceListUpdate(e) => e.content(),
            Edu::SigningKeyUpdate(e) => e.content(),
            Edu::DirectToDevice(e) => e.content(),
            Edu::Unknown { content, .. } => content,
        }
    }

    /// The envelope `{"content", "edu_type"}`, as sent in a transaction.
    pub fn to_object(&self) -> Object {
        let mut o = Object::new();
        o.insert("content", self.content().clone());
        o.insert("edu_type", self.edu_type());
        o
    }

    /// The envelope, consuming the EDU (no copy of the content).
    pub fn into_object(self) -> Object {
        let edu_type = self.edu_type().to_owned();
        let content = match self {
            Edu::Typing(e) => e.content,
            Edu::Receipt(e) => e.content,
            Edu::Presence(e) => e.content,
            Edu::DeviceListUpdate(e) => e.content,
            Edu::SigningKeyUpdate(e) => e.content,
            Edu::DirectToDevice(e) => e.content,
            Edu::Unknown { content, .. } => content,
        };
        let mut o = Object::new();
        o.insert("content", content);
        o.insert("edu_type", edu_type);
        o
    }

    /// Whether the EDU must not be lost: to-device messages, device list updates and signing key
    /// updates. A receiver whose handler fails on one must answer the transaction with a 5xx so
    /// the sender retries it (DIGEST §21.11); a sender never drops one silently.
    pub fn is_reliable(&self) -> bool {
        matches!(
            self,
            Edu::DirectToDevice(_) | Edu::DeviceListUpdate(_) | Edu::SigningKeyUpdate(_)
        )
    }

    /// Every user ID the EDU speaks for (the ones that must belong to the sender): the typing
    /// user, each receipt's user, the user of each presence update (entries skipped for want of
    /// a state speak for no one), the device-list or signing-key owner, the to-device sender.
    /// Empty for unknown EDUs.
    pub fn user_ids(&self) -> Vec<&str> {
        match self {
            Edu::Typing(e) => vec![e.user_id()],
            Edu::Receipt(e) => e.user_ids(),
            Edu::Presence(e) => e
                .push()
                .iter()
                .filter_map(Value::as_object)
                .filter(|o| PresenceUpdate::acted_on(o))
                .filter_map(|o| o.get_str("user_id"))
                .collect(),
            Edu::DeviceListUpdate(e) => vec![e.user_id()],
            Edu::SigningKeyUpdate(e) => vec![e.user_id()],
            Edu::DirectToDevice(e) => vec![e.sender()],
            Edu::Unknown { .. } => Vec::new(),
        }
    }

    /// Checks that every user the EDU speaks for ([`Edu::user_ids`]) belongs to `origin`, the
    /// server that authenticated the request (DIGEST §15).
    ///
    /// Stricter than Synapse in one case: Synapse skips only the offending entries of a receipt
    /// or presence EDU, while this rejects the whole EDU. A conforming sender never mixes users of
    /// other servers into its EDUs, so nothing legitimate is lost.
    ///
    /// # Errors
    /// [`EduError::ForeignUser`] naming the first user that does not belong.
    pub fn check_origin(&self, origin: &str) -> Result<(), EduError> {
        self.user_ids()
            .into_iter()
            .try_for_each(|u| same_origin(u, origin))
    }
}

impl From<Typing> for Edu {
    fn from(e: Typing) -> Edu {
        Edu::Typing(e)
    }
}

impl From<Receipt> for Edu {
    fn from(e: Receipt) -> Edu {
        Edu::Receipt(e)
    }
}

impl From<Presence> for Edu {
    fn from(e: Presence) -> Edu {
        Edu::Presence(e)
    }
}

impl From<DeviceListUpdate> for Edu {
    fn from(e: DeviceListUpdate) -> Edu {
        Edu::DeviceListUpdate(e)
    }
}

impl From<SigningKeyUpdate> for Edu {
    fn from(e: SigningKeyUpdate) -> Edu {
        Edu::SigningKeyUpdate(e)
    }
}

impl From<DirectToDevice> for Edu {
    fn from(e: DirectToDevice) -> Edu {
        Edu::DirectToDevice(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{parse_object, ParseOptions};

    fn obj(s: &str) -> Object {
        parse_object(s.as_bytes(), &ParseOptions::LEGACY).unwrap()
    }

    #[test]
    fn pointer_escapes() {
        assert_eq!(ptr("/content", "a/b~c"), "/content/a~1b~0c");
    }

    #[test]
    fn receipt_entries_round_trip() {
        let r = Receipt::from_content(obj(
            r#"{"!a:x":{"m.read":{"@u:x":{"event_ids":["$1"],"data":{"ts":5,"thread_id":"main","z":1}}}},
                "!b:x":{"m.read":{"@v:x":{"event_ids":["$2"]}}}}"#,
        ))
        .unwrap();
        let entries = r.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].thread_id(), Some("main"));
        assert_eq!(entries[0].ts(), Some(5));
        assert_eq!(entries[1].data(), None);
        let back = Receipt::from_entries(entries.clone());
        assert_eq!(back, r);
        let newer = ReceiptEntry::new("!a:x", "m.read", "@u:x", "$9", 6, None).unwrap();
        let merged = Receipt::from_entries([entries[0].clone(), newer.clone()]);
        assert_eq!(merged.entries(), [newer], "the later receipt wins");
    }

    #[test]
    fn presence_builders() {
        let u = PresenceUpdate::new("@u:x", "online", Some(3))
            .unwrap()
            .with_status_msg("hi")
            .with_currently_active(true);
        assert_eq!(
            (u.last_active_ago(), u.status_msg(), u.currently_active()),
            (Some(3), Some("hi"), Some(true))
        );
        let p = Presence::from_updates([u.clone()]);
        assert_eq!(Presence::from_content(p.content().clone()).unwrap(), p);
        assert_eq!(p.updates(), vec![u]);
        assert!(PresenceUpdate::new("nope", "online", None).is_err());
    }

    #[test]
    fn device_list_ids_as_text() {
        let d = DeviceListUpdate::from_content(obj(
            r#"{"user_id":"@u:x","device_id":"D","stream_id":"7","prev_id":[5,"6"],"keys":null}"#,
        ))
        .unwrap();
        assert_eq!(d.stream_id(), "7");
        assert_eq!(d.prev_ids(), ["5", "6"]);
        assert!(d.keys().is_none() && !d.deleted());
        let e = DeviceListUpdate::from_content(obj(
            r#"{"user_id":"@u:x","device_id":"D","stream_id":1,"prev_id":null}"#,
        ))
        .unwrap_err();
        assert_eq!(e.code(), "edu_wrong_type");
    }

    #[test]
    fn to_device_recipients() {
        let d = DirectToDevice::new(
            "@s:x",
            "m.room_key_request",
            "abc",
            obj(r#"{"@r:y":{"DEV":{"a":1},"*":{"b":2}}}"#),
        )
        .unwrap();
        let r: Vec<_> = d.recipients().map(|(u, dev, _)| (u, dev)).collect();
        assert_eq!(r, [("@r:y", "*"), ("@r:y", "DEV")]);
        assert!(Edu::from(d).is_reliable());
    }

    /// A typing EDU's `typing` is required but may be any value, read as Synapse's Python reads
    /// it; the EDU is kept as received.
    #[test]
    fn typing_is_read_as_python_reads_it() {
        let typing = |v: &str| {
            Typing::from_content(obj(&format!(
                r#"{{"room_id":"!r:x","user_id":"@u:x","typing":{v}}}"#
            )))
        };
        for yes in ["true", "1", r#""yes""#, "[0]", r#"{"a":1}"#, "-0.5"] {
            assert!(typing(yes).unwrap().typing(), "{yes}");
        }
        for no in ["false", "null", "0", r#""""#, "[]", "{}", "0.0"] {
            assert!(!typing(no).unwrap().typing(), "{no}");
        }
        let t = typing(r#""yes""#).unwrap();
        assert_eq!(t.content().get_str("typing"), Some("yes"));
        let e = Typing::from_content(obj(r#"{"room_id":"!r:x","user_id":"@u:x"}"#)).unwrap_err();
        assert_eq!(e.code(), "edu_missing_field");
    }

    /// A receipt whose `data.thread_id` is not a string is a receipt without a thread, not a
    /// malformed EDU (which would lose the other receipts in it).
    #[test]
    fn receipt_thread_id_not_a_string_is_no_thread() {
        let r = Receipt::from_content(obj(
            r#"{"!a:x":{"m.read":{"@u:x":{"event_ids":["$1"],"data":{"ts":5,"thread_id":7}},
                                  "@v:x":{"event_ids":["$2"],"data":{"thread_id":null}},
                                  "@w:x":{"event_ids":["$3"],"data":{"thread_id":"t"}}}}}"#,
        ))
        .unwrap();
        let entries = r.entries();
        let threads: Vec<_> = entries.iter().map(ReceiptEntry::thread_id).collect();
        assert_eq!(threads, [None, None, Some("t")]);
        assert_eq!(entries[0].ts(), Some(5));
        let e = Receipt::from_content(obj(
            r#"{"!a:x":{"m.read":{"@u:x":{"event_ids":["$1"],"data":[]}}}}"#,
        ))
        .unwrap_err();
        assert_eq!(
            e.code(),
            "edu_wrong_type",
            "data itself must still be an object"
        );
    }

    /// Presence entries without a user or a presence state are skipped, as Synapse skips them,
    /// and do not take the other entries down with them; a malformed entry Synapse would act on
    /// still refuses the EDU.
    #[test]
    fn presence_entries_without_a_state_are_skipped() {
        let p = Presence::from_content(obj(r#"{"push":[{"user_id":"@a:x"},
                        {"user_id":"@b:x","presence":null,"last_active_ago":"junk"},
                        {"user_id":"@c:x","presence":""},
                        {"presence":"online"},
                        {"user_id":null,"presence":"online"},
                        {"user_id":"@d:x","presence":"online","last_active_ago":4}]}"#))
        .unwrap();
        let users: Vec<_> = p.updates().iter().map(|u| u.user_id().to_owned()).collect();
        assert_eq!(users, ["@d:x"]);
        let edu = Edu::from(p);
        assert_eq!(edu.user_ids(), ["@d:x"]);
        // A skipped entry of another server's user does not make the EDU foreign.
        let p = Presence::from_content(obj(
            r#"{"push":[{"user_id":"@e:y"},{"user_id":"@d:x","presence":"online"}]}"#,
        ))
        .unwrap();
        assert!(Edu::from(p).check_origin("x").is_ok());
        for bad in [
            r#"{"push":[{"user_id":"@d:x","presence":"online","last_active_ago":"5"}]}"#,
            r#"{"push":[{"user_id":"nope","presence":null}]}"#,
            r#"{"push":[{"user_id":5,"presence":"online"}]}"#,
            r#"{"push":[{"user_id":"@d:x","presence":5}]}"#,
            r#"{"push":["x"]}"#,
        ] {
            assert!(Presence::from_content(obj(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn envelope_errors() {
        let e = Edu::from_value(Value::Bool(true)).unwrap_err();
        assert_eq!(e.code(), "edu_not_object");
        let e = Edu::from_object(&obj(r#"{"content":{}}"#)).unwrap_err();
        assert_eq!(
            e,
            EduError::MissingField {
                field: "/edu_type".into()
            }
        );
        let e = Edu::from_object(&obj(r#"{"edu_type":"x","content":[]}"#)).unwrap_err();
        assert_eq!(e.code(), "edu_wrong_type");
        let u = Edu::from_object(&obj(r#"{"edu_type":"x.y","content":{"a":1.5}}"#)).unwrap();
        assert!(matches!(&u, Edu::Unknown { edu_type, .. } if edu_type == "x.y"));
        assert!(!u.is_reliable() && u.user_ids().is_empty());
    }
}
