//! The one place core errors become Python exceptions: `mxfed.MxfedError` (a `ValueError`) and
//! one subclass per core error family, each instance carrying `.code`, the core's stable code.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::{create_exception, PyErr};

use mxfed_core::canonical::CanonicalJsonError as CoreJsonError;
use mxfed_core::discovery::DiscoveryError as CoreDiscoveryError;
use mxfed_core::edu::EduError as CoreEduError;
use mxfed_core::event::EventError as CoreEventError;
use mxfed_core::identifiers::IdError;
use mxfed_core::keys::KeyError;
use mxfed_core::pdu::PduError as CorePduError;
use mxfed_core::room::RestrictedJoinError as CoreRestrictedJoinError;
use mxfed_core::room_version::UnknownRoomVersion;
use mxfed_core::server_keys::ServerKeysError as CoreServerKeysError;
use mxfed_core::signing::SignatureError as CoreSignatureError;
use mxfed_core::transaction::TransactionError as CoreTransactionError;
use mxfed_core::xmatrix::XMatrixError as CoreXMatrixError;

create_exception!(
    mxfed,
    MxfedError,
    PyValueError,
    "Base class of every mxfed error; `.code` is the core's stable error code."
);
create_exception!(
    mxfed,
    CanonicalJsonError,
    MxfedError,
    "Input that canonical JSON cannot hold (syntax, floats, big integers, duplicate keys, ...)."
);
create_exception!(
    mxfed,
    SigningKeyError,
    MxfedError,
    "A malformed key, key ID or signing.key file."
);
create_exception!(
    mxfed,
    SignatureError,
    MxfedError,
    "A signature that is missing, malformed or does not verify."
);
create_exception!(
    mxfed,
    EventError,
    MxfedError,
    "An event operation that cannot be done (missing or mistyped field)."
);
create_exception!(
    mxfed,
    PduError,
    MxfedError,
    "A PDU that breaks the format rules of its room version."
);
create_exception!(
    mxfed,
    XMatrixError,
    MxfedError,
    "Request authentication (Authorization: X-Matrix) that failed."
);
create_exception!(
    mxfed,
    ServerKeysError,
    MxfedError,
    "A /_matrix/key/v2/server response that is malformed or not self-signed."
);
create_exception!(
    mxfed,
    RoomVersionError,
    MxfedError,
    "An unknown or unsupported room version."
);
create_exception!(
    mxfed,
    TransactionError,
    MxfedError,
    "A transaction body that must be refused as a whole."
);
create_exception!(
    mxfed,
    IdentifierError,
    MxfedError,
    "A malformed server name, user ID or event ID."
);
create_exception!(mxfed, EduError, MxfedError, "A malformed EDU.");
create_exception!(
    mxfed,
    RestrictedJoinError,
    MxfedError,
    "A join to a restricted room that this server cannot authorise."
);
create_exception!(
    mxfed,
    DiscoveryError,
    MxfedError,
    "Malformed server discovery input (SRV records)."
);

/// An exception of class `E` with `.code` set.
pub(crate) fn coded<E: pyo3::PyTypeInfo>(code: &str, message: impl std::fmt::Display) -> PyErr {
    // Untrusted input can put newlines into messages; keep them one line, as the CLI does.
    let message = message.to_string().replace('\n', " ");
    let err = PyErr::new::<E, _>((message,));
    Python::attach(|py| {
        // Setting an attribute on a fresh exception instance cannot fail in practice; if it did,
        // the exception is still raised, only without `.code`.
        let _ = err.value(py).setattr("code", code);
    });
    err
}

/// Conversion of a core error into its Python exception.
pub(crate) trait IntoPyErr {
    /// The exception, with `.code` = the core's `code()`.
    fn into_py_err(self) -> PyErr;
}

macro_rules! family {
    ($core:ty => $py:ty) => {
        impl IntoPyErr for $core {
            fn into_py_err(self) -> PyErr {
                coded::<$py>(self.code(), &self)
            }
        }
    };
}

family!(CoreJsonError => CanonicalJsonError);
family!(KeyError => SigningKeyError);
family!(CoreSignatureError => SignatureError);
family!(CoreXMatrixError => XMatrixError);
family!(CoreServerKeysError => ServerKeysError);
family!(UnknownRoomVersion => RoomVersionError);
family!(IdError => IdentifierError);
family!(CoreEduError => EduError);
family!(CoreRestrictedJoinError => RestrictedJoinError);

impl IntoPyErr for CoreEventError {
    fn into_py_err(self) -> PyErr {
        match self {
            // A malformed `signatures` found while signing is a signature problem.
            CoreEventError::Signature(e) => e.into_py_err(),
            e => coded::<EventError>(e.code(), &e),
        }
    }
}

impl IntoPyErr for mxfed_core::event::TemplateError {
    fn into_py_err(self) -> PyErr {
        use mxfed_core::event::TemplateError as T;
        match self {
            T::RoomVersion(e) => e.into_py_err(),
            T::Format(e) => e.into_py_err(),
            T::Event(e) => e.into_py_err(),
            e => coded::<EventError>(e.code(), &e),
        }
    }
}

impl IntoPyErr for CorePduError {
    fn into_py_err(self) -> PyErr {
        match self {
            // Bytes that are not JSON for the room version: the same class as any JSON error.
            CorePduError::Json(e) => e.into_py_err(),
            e => coded::<PduError>(e.code(), &e),
        }
    }
}

impl IntoPyErr for CoreTransactionError {
    fn into_py_err(self) -> PyErr {
        match self {
            CoreTransactionError::Json(e) => e.into_py_err(),
            e => coded::<TransactionError>(e.code(), &e),
        }
    }
}

impl IntoPyErr for CoreDiscoveryError {
    fn into_py_err(self) -> PyErr {
        match self {
            CoreDiscoveryError::Json(e) => e.into_py_err(),
            e => coded::<DiscoveryError>(e.code(), &e),
        }
    }
}

/// `Result<T, CoreError>` → `PyResult<T>`.
pub(crate) trait OrRaise<T> {
    /// Maps the error with [`IntoPyErr`].
    fn or_raise(self) -> PyResult<T>;
}

impl<T, E: IntoPyErr> OrRaise<T> for Result<T, E> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(IntoPyErr::into_py_err)
    }
}

/// Registers every exception class on the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MxfedError", py.get_type::<MxfedError>())?;
    m.add("CanonicalJsonError", py.get_type::<CanonicalJsonError>())?;
    m.add("SigningKeyError", py.get_type::<SigningKeyError>())?;
    m.add("SignatureError", py.get_type::<SignatureError>())?;
    m.add("EventError", py.get_type::<EventError>())?;
    m.add("PduError", py.get_type::<PduError>())?;
    m.add("XMatrixError", py.get_type::<XMatrixError>())?;
    m.add("ServerKeysError", py.get_type::<ServerKeysError>())?;
    m.add("RoomVersionError", py.get_type::<RoomVersionError>())?;
    m.add("TransactionError", py.get_type::<TransactionError>())?;
    m.add("IdentifierError", py.get_type::<IdentifierError>())?;
    m.add("EduError", py.get_type::<EduError>())?;
    m.add("DiscoveryError", py.get_type::<DiscoveryError>())?;
    m.add("RestrictedJoinError", py.get_type::<RestrictedJoinError>())?;
    Ok(())
}
