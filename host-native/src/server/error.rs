//! The server's one error type and the single place core errors become Matrix errors:
//! `{"errcode","error"}` JSON with the right HTTP status. Details of 5xx go to the log, not the
//! peer.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// A Matrix error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// `M_…`.
    pub errcode: &'static str,
    /// Human-readable.
    pub error: String,
    /// Extra fields (e.g. `room_version` for `M_INCOMPATIBLE_ROOM_VERSION`).
    pub extra: Option<(&'static str, String)>,
    /// For 429 `M_LIMIT_EXCEEDED`: when to retry (an integer `retry_after_ms`, and `Retry-After`).
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    /// Any status and code.
    pub fn new(status: u16, errcode: &'static str, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            errcode,
            error: error.into(),
            extra: None,
            retry_after_ms: None,
        }
    }
    /// 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`.
    pub fn limit_exceeded(retry_after_ms: u64) -> ApiError {
        let mut e = ApiError::new(429, "M_LIMIT_EXCEEDED", "Too many requests");
        e.retry_after_ms = Some(retry_after_ms);
        e
    }
    /// 400 `M_BAD_JSON`.
    pub fn bad_json(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, "M_BAD_JSON", e.to_string())
    }
    /// 400 `M_INVALID_PARAM`.
    pub fn invalid(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, "M_INVALID_PARAM", e.to_string())
    }
    /// 400 `M_MISSING_PARAM`.
    pub fn missing(what: &str) -> ApiError {
        ApiError::new(400, "M_MISSING_PARAM", format!("missing {what}"))
    }
    /// 403 `M_FORBIDDEN`.
    pub fn forbidden(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(403, "M_FORBIDDEN", e.to_string())
    }
    /// 404 `M_NOT_FOUND`.
    pub fn not_found(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(404, "M_NOT_FOUND", e.to_string())
    }
    /// 404 `M_UNRECOGNIZED`: an endpoint we do not have.
    pub fn unrecognized() -> ApiError {
        ApiError::new(404, "M_UNRECOGNIZED", "Unrecognized request")
    }
    /// 405 `M_UNRECOGNIZED`: a path we have, with a method it does not take.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "M_UNRECOGNIZED",
            "Unrecognized request: method not allowed",
        )
    }
    /// 500 `M_UNKNOWN`: the details are logged here and not sent.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {e}");
        ApiError::new(500, "M_UNKNOWN", "Internal server error")
    }
    /// 502-ish failure talking to another server (`M_UNKNOWN`, status 502).
    pub fn remote(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(502, "M_UNKNOWN", e.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.errcode, self.error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("errcode".into(), self.errcode.into());
        body.insert("error".into(), self.error.into());
        if let Some((k, v)) = self.extra {
            body.insert(k.into(), v.into());
        }
        if let Some(ms) = self.retry_after_ms {
            body.insert("retry_after_ms".into(), ms.into());
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::Value::Object(body).to_string(),
        )
            .into_response();
        if let Some(ms) = self.retry_after_ms {
            // Retry-After counts whole seconds: round up so a client never comes back early.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, ms.div_ceil(1000).max(1).into());
        }
        resp
    }
}

impl From<mxfed_core::xmatrix::XMatrixError> for ApiError {
    fn from(e: mxfed_core::xmatrix::XMatrixError) -> ApiError {
        let (status, errcode) = e.errcode();
        ApiError::new(status, errcode, e.to_string())
    }
}

impl From<mxfed_core::transaction::TransactionError> for ApiError {
    fn from(e: mxfed_core::transaction::TransactionError) -> ApiError {
        use mxfed_core::transaction::TransactionError as T;
        let errcode = match e {
            T::Json(_) => "M_NOT_JSON",
            T::TooManyPdus { .. } | T::TooManyEdus { .. } => "M_TOO_LARGE",
            _ => "M_BAD_JSON",
        };
        ApiError::new(e.http_status(), errcode, e.to_string())
    }
}

impl From<mxfed_core::canonical::CanonicalJsonError> for ApiError {
    fn from(e: mxfed_core::canonical::CanonicalJsonError) -> ApiError {
        ApiError::new(400, "M_NOT_JSON", e.to_string())
    }
}

impl From<mxfed_core::server_keys::ServerKeysError> for ApiError {
    fn from(e: mxfed_core::server_keys::ServerKeysError) -> ApiError {
        ApiError::bad_json(format!("{} ({})", e, e.code()))
    }
}

impl From<mxfed_core::pdu::PduError> for ApiError {
    fn from(e: mxfed_core::pdu::PduError) -> ApiError {
        ApiError::invalid(format!("{} ({})", e, e.code()))
    }
}

impl From<mxfed_core::event::EventError> for ApiError {
    fn from(e: mxfed_core::event::EventError) -> ApiError {
        ApiError::invalid(format!("{} ({})", e, e.code()))
    }
}

impl From<mxfed_core::identifiers::IdError> for ApiError {
    fn from(e: mxfed_core::identifiers::IdError) -> ApiError {
        ApiError::invalid(format!("{} ({})", e, e.code()))
    }
}

impl From<mxfed_core::room_version::UnknownRoomVersion> for ApiError {
    fn from(e: mxfed_core::room_version::UnknownRoomVersion) -> ApiError {
        let mut a = ApiError::new(400, "M_UNSUPPORTED_ROOM_VERSION", e.to_string());
        a.extra = Some(("room_version", e.0));
        a
    }
}

impl From<mxfed_core::signing::SignatureError> for ApiError {
    fn from(e: mxfed_core::signing::SignatureError) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> ApiError {
        ApiError::internal(format!("database: {e}"))
    }
}
