//! Time behind a trait, so breaker transitions, freshness and (on the in-memory Redis of
//! `testing`) expiry can be tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A clock: monotonic time from an arbitrary origin, and the wall time values' freshness is
/// written in.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Time elapsed since the clock's origin.
    fn elapsed(&self) -> Duration;

    /// Microseconds since the Unix epoch.
    fn unix_micros(&self) -> u64 {
        system_unix_micros()
    }
}

fn system_unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The real clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to; clones share the same time. Its wall time starts at
/// the system's when it was made.
#[derive(Debug, Clone)]
pub struct MockClock {
    nanos: Arc<AtomicU64>,
    origin_unix_micros: u64,
}

impl Default for MockClock {
    fn default() -> Self {
        Self {
            nanos: Arc::default(),
            origin_unix_micros: system_unix_micros(),
        }
    }
}

impl MockClock {
    /// A clock at its origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn unix_micros(&self) -> u64 {
        let elapsed = self.nanos.load(Ordering::SeqCst) / 1_000;
        self.origin_unix_micros.saturating_add(elapsed)
    }
}
