//! Time as data. The core never reads a clock: every call that needs "now" takes a [`Timestamp`].

use std::fmt;
use std::ops::{Add, Sub};

/// Milliseconds since the Unix epoch, as Matrix writes every timestamp (`origin_server_ts`,
/// `valid_until_ts`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The timestamp as a signed integer (Matrix JSON carries them as canonical integers).
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// From a JSON integer; negative values clamp to the epoch.
    pub fn from_i64(ms: i64) -> Timestamp {
        Timestamp(u64::try_from(ms).unwrap_or(0))
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Millis) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }
}

/// A span of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// From seconds.
    pub const fn from_secs(s: u64) -> Millis {
        Millis(s * 1000)
    }
}

impl Add<Millis> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Millis) -> Timestamp {
        self.saturating_add(d)
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Millis;
    fn sub(self, earlier: Timestamp) -> Millis {
        self.saturating_since(earlier)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
