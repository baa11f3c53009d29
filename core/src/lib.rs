//! `mxfed-core`: the pure protocol core of mxfed, a Matrix federation library.
//!
//! What it does: canonical JSON, ed25519 keys and JSON signing, room versions 1–12 as data,
//! content and reference hashes, redaction, event IDs (and v12 room IDs), hashing-and-signing of
//! new events, server key responses, and the format/signature/hash checks on received PDUs.
//!
//! What it deliberately does not do: any I/O. It reads no clock, opens no socket, touches no
//! file and draws no randomness. Time, keys, entropy and lookups come in as arguments, so the
//! same code runs natively, in WebAssembly and under Python, byte for byte the same.
//!
//! ```
//! use mxfed_core::{canonical, event, keys::SigningKey, RoomVersion};
//!
//! let key = SigningKey::from_seed_base64("1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
//! let v = RoomVersion::get("10").unwrap();
//! let mut ev = canonical::parse_object(
//!     br#"{"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain",
//!          "content":{"body":"hi"},"origin_server_ts":1000000,"depth":3,
//!          "prev_events":[],"auth_events":[]}"#,
//!     &canonical::ParseOptions::STRICT,
//! ).unwrap();
//! event::hash_and_sign_event(&mut ev, v, "domain", &key).unwrap();
//! let id = event::event_id(&ev, v).unwrap();
//! assert!(id.starts_with('$') && id.len() == 44);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod acl;
pub mod auth;
pub mod base64;
pub mod canonical;
pub mod discovery;
pub mod edu;
pub mod event;
pub mod identifiers;
pub mod inbound;
pub mod keys;
pub mod outbound;
pub mod pdu;
pub mod room;
pub mod room_version;
pub mod server_keys;
pub mod signing;
pub mod state_res;
pub mod time;
pub mod transaction;
pub mod xmatrix;

pub use room_version::RoomVersion;
pub use time::{Millis, Timestamp};
