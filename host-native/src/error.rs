//! The CLI's one error type: a stable code, a one-line message, and an exit status.

use std::fmt;

/// Exit status for "verification failed".
pub const EXIT_FAILED: u8 = 1;
/// Exit status for bad input or usage.
pub const EXIT_BAD_INPUT: u8 = 2;

/// An error the CLI reports as `mxfed: error[code]: message` on one line of stderr.
#[derive(Debug)]
pub struct CliError {
    /// The stable code, the same as the core's (and every other host's).
    pub code: &'static str,
    /// One line, no trailing newline.
    pub message: String,
    /// The process exit status.
    pub exit: u8,
}

impl CliError {
    /// Bad input or usage (exit 2).
    pub fn bad_input(code: &'static str, message: impl fmt::Display) -> CliError {
        CliError {
            code,
            message: message.to_string().replace('\n', " "),
            exit: EXIT_BAD_INPUT,
        }
    }

    /// Verification failed (exit 1).
    pub fn failed(code: &'static str, message: impl fmt::Display) -> CliError {
        CliError {
            code,
            message: message.to_string().replace('\n', " "),
            exit: EXIT_FAILED,
        }
    }
}

/// Maps every core error family to a bad-input CLI error with the core's own code.
macro_rules! bad_input_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> CliError {
                CliError::bad_input(e.code(), &e)
            }
        }
    )*};
}

bad_input_from!(
    mxfed_core::canonical::CanonicalJsonError,
    mxfed_core::keys::KeyError,
    mxfed_core::signing::SignatureError,
    mxfed_core::event::EventError,
    mxfed_core::event::TemplateError,
    mxfed_core::room_version::UnknownRoomVersion,
    mxfed_core::server_keys::ServerKeysError,
    mxfed_core::identifiers::IdError,
    mxfed_core::pdu::PduError,
    mxfed_core::xmatrix::XMatrixError,
    mxfed_core::discovery::DiscoveryError,
);
