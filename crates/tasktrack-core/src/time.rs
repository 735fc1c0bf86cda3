//! Time as an argument: [`Timestamp`] and the [`Clock`] callers own.
//!
//! No backend ever reads its own clock: every request carries `now`, taken by the caller from its
//! [`Clock`]. Tests drive every backend with a [`ManualClock`], so lease expiry and retry backoff
//! are tested without sleeping.
//!
//! Leases compare timestamps taken on different machines, so a lease must be much longer than
//! the clock skew between them (and than any pause a worker may suffer, e.g. a GC or a VM
//! migration): with NTP-synchronised hosts a few hundred milliseconds of skew is typical, and
//! the default lease of 5 minutes leaves ample room.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A UTC instant with millisecond precision, serialized as RFC 3339 (`2026-11-23T11:04:46.123Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The first instant RFC 3339 can write, 0000-01-01T00:00:00.000Z (it writes four-digit
    /// years): the earliest a store that keeps instants as RFC 3339 text can read back.
    pub const MIN: Timestamp = Timestamp(-62_167_219_200_000);

    /// The last instant RFC 3339 can write, 9999-12-31T23:59:59.999Z: [`Timestamp::plus`] stops
    /// here, so a computed time (a very long lease, a capped backoff) always reads back.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The system's current time.
    pub fn now() -> Self {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }

    /// This instant plus `d`, at most [`Timestamp::MAX`] (sub-millisecond parts are dropped).
    pub fn plus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms).min(Self::MAX.0.max(self.0)))
    }

    /// This instant minus `d` (saturating).
    pub fn minus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// Parses RFC 3339 (any offset), truncating to milliseconds.
    pub fn parse(s: &str) -> Result<Self, crate::Error> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|e| crate::Error::invalid(format!("bad timestamp {s:?}: {e}")))
    }

    /// RFC 3339 in UTC with milliseconds (`2026-11-24T03:13:20.123Z`). chrono's RFC 3339 writer,
    /// not a `format` string: every history entry and JSON task carries timestamps, and parsing
    /// a format string each time was a visible share of a SQLite hand-off's CPU.
    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => format!("@{}ms", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where `now` comes from.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system clock (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use tasktrack_core::{Clock, ManualClock, Timestamp};
/// let clock = ManualClock::new(Timestamp::from_millis(1_000));
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now(), Timestamp::from_millis(3_000));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.as_millis())))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_stops_at_the_last_writable_instant() {
        let now = Timestamp::from_millis(1_795_000_000_123);
        assert_eq!(now.plus(Duration::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::MAX.to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::MIN.to_rfc3339(), "0000-01-01T00:00:00.000Z");
        let far = now.plus(Duration::from_secs(10_000 * 365 * 86_400));
        assert_eq!(Timestamp::parse(&far.to_rfc3339()).unwrap(), far);
        // An instant already past it (from_millis) is left where it is, never moved back.
        let past = Timestamp::from_millis(i64::MAX - 5);
        assert_eq!(past.plus(Duration::from_millis(1)), past);
    }

    #[test]
    fn rfc3339_round_trip_keeps_milliseconds() {
        let t = Timestamp::from_millis(1_795_000_000_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-18T11:06:40.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        // Whole seconds keep their three digits; instants before 1970 count down.
        assert_eq!(
            Timestamp::from_millis(0).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn garbage_timestamp_is_an_error() {
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }
}
