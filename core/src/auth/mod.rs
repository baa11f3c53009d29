//! Authorization: the rules every room version applies to an event, against the event's own
//! auth events and against a room state (DIGEST §10).

mod pdu;
mod power;
mod rules;

pub use pdu::Pdu;
pub use power::{creators, level, Levels, CREATOR_POWER};
pub(crate) use rules::{auth_type_refs, refill};
pub use rules::{
    auth_types_for_event, check_create, check_state_dependent, check_state_independent, AuthError,
    AuthEvents, KnownEvent,
};
