//! The one error type of the bindings, and its mapping to a JavaScript `Error`.
//!
//! Every core error family maps to a [`HostError`] carrying the core's stable `code()`; at the
//! wasm boundary it becomes an `Error` whose `name` is `MxfedError` and whose `code` is that
//! code, the same string the CLI prints and the Python bindings raise. Request-authentication
//! errors also carry `status` and `errcode` ([`XMatrixError::errcode`]), so the edge worker
//! answers with the Matrix error the core chose.

use std::fmt;

use mxfed_core::xmatrix::XMatrixError;
use wasm_bindgen::JsValue;

/// A core error, flattened for the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    /// The core's stable code (`json_float`, `xmatrix_bad_signature`, …).
    pub code: &'static str,
    /// One line for people.
    pub message: String,
    /// For errors a server answers: the HTTP status and Matrix `errcode`.
    pub http: Option<(u16, &'static str)>,
}

impl HostError {
    /// An error with no HTTP mapping.
    pub fn new(code: &'static str, message: impl fmt::Display) -> HostError {
        HostError {
            code,
            message: message.to_string().replace('\n', " "),
            http: None,
        }
    }

    /// An error a server answers with `status` and `errcode`.
    pub fn http(
        code: &'static str,
        message: impl fmt::Display,
        status: u16,
        errcode: &'static str,
    ) -> HostError {
        HostError {
            http: Some((status, errcode)),
            ..HostError::new(code, message)
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

macro_rules! from_core {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for HostError {
            fn from(e: $t) -> HostError {
                HostError::new(e.code(), &e)
            }
        }
    )*};
}

from_core!(
    mxfed_core::canonical::CanonicalJsonError,
    mxfed_core::keys::KeyError,
    mxfed_core::signing::SignatureError,
    mxfed_core::event::EventError,
    mxfed_core::event::TemplateError,
    mxfed_core::room_version::UnknownRoomVersion,
    mxfed_core::server_keys::ServerKeysError,
    mxfed_core::identifiers::IdError,
    mxfed_core::pdu::PduError,
    mxfed_core::base64::Base64Error,
    mxfed_core::discovery::DiscoveryError,
    mxfed_core::room::RestrictedJoinError,
);

impl From<XMatrixError> for HostError {
    fn from(e: XMatrixError) -> HostError {
        let (status, errcode) = e.errcode();
        HostError::http(e.code(), &e, status, errcode)
    }
}

impl From<mxfed_core::transaction::TransactionError> for HostError {
    fn from(e: mxfed_core::transaction::TransactionError) -> HostError {
        // Synapse answers an unreadable transaction body with 400.
        HostError::http(e.code(), &e, e.http_status(), "M_BAD_JSON")
    }
}

impl From<HostError> for JsValue {
    fn from(e: HostError) -> JsValue {
        let err = js_sys::Error::new(&e.message);
        err.set_name("MxfedError");
        let set = |k: &str, v: JsValue| {
            // Reflect.set on a fresh Error object cannot fail; nothing to report if it did.
            let _ = js_sys::Reflect::set(&err, &JsValue::from_str(k), &v);
        };
        set("code", JsValue::from_str(e.code));
        if let Some((status, errcode)) = e.http {
            set("status", JsValue::from(status));
            set("errcode", JsValue::from_str(errcode));
        }
        err.into()
    }
}
