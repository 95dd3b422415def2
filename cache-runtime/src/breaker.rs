//! The circuit breaker: stop calling Redis after repeated connection-class failures.
//!
//! Closed → Open after `threshold` consecutive failures; Open → HalfOpen once `cooldown` has
//! passed, letting exactly one probe through; the probe's success closes the breaker, its
//! failure re-opens it for another cooldown. The hot path is a few atomic loads.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Clock;

/// Default number of consecutive connection-class failures that opens the breaker.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// Default time the breaker stays open before letting a probe through.
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(5);

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Redis is called normally.
    Closed,
    /// Redis is not called until the cooldown passes.
    Open,
    /// One probe call is in flight; everything else is short-circuited.
    HalfOpen,
}

impl BreakerState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Closed,
            1 => Self::Open,
            _ => Self::HalfOpen,
        }
    }
}

/// A call may go ahead; tells the breaker how it ended through [`Breaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Permit {
    /// A normal call while closed.
    Normal,
    /// The single half-open probe.
    Probe,
}

/// The breaker. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    clock: Arc<dyn Clock>,
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    /// When the breaker last opened, or when the current probe started (clock nanos).
    since_nanos: AtomicU64,
    /// Set while something (a pending replay) wants the next call to probe at once.
    expedited: AtomicBool,
    transitions: AtomicU64,
    /// Serializes transitions so two failing calls cannot both open it.
    transition: Mutex<()>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            clock,
            state: AtomicU8::new(0),
            consecutive_failures: AtomicU32::new(0),
            since_nanos: AtomicU64::new(0),
            expedited: AtomicBool::new(false),
            transitions: AtomicU64::new(0),
            transition: Mutex::new(()),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// How many state changes happened since creation.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn cooldown_passed(&self) -> bool {
        if self.expedited.load(Ordering::Acquire) {
            return true;
        }
        let since = self.since_nanos.load(Ordering::Acquire);
        let cooldown = u64::try_from(self.cooldown.as_nanos()).unwrap_or(u64::MAX);
        self.now_nanos().saturating_sub(since) >= cooldown
    }

    /// Lets the next call probe Redis now instead of after the rest of the cooldown: for
    /// invalidations waiting to be replayed, which should land as soon as Redis answers.
    pub(crate) fn expedite(&self) {
        if self.state() != BreakerState::Closed {
            self.expedited.store(true, Ordering::Release);
        }
    }

    /// Whether [`Self::permit`] would refuse now (without taking a probe).
    pub(crate) fn refuses(&self) -> bool {
        self.state() != BreakerState::Closed && !self.cooldown_passed()
    }

    /// Whether a call may go to Redis now.
    pub(crate) fn permit(&self) -> Option<Permit> {
        match self.state() {
            BreakerState::Closed => Some(Permit::Normal),
            // A probe that never reported back (its future was dropped) must not wedge the
            // breaker half-open: after another cooldown, the next caller probes again.
            BreakerState::Open | BreakerState::HalfOpen if self.cooldown_passed() => {
                let _guard = self.lock();
                if self.state() == BreakerState::Closed {
                    return Some(Permit::Normal);
                }
                if !self.cooldown_passed() {
                    return None;
                }
                self.since_nanos.store(self.now_nanos(), Ordering::Release);
                self.expedited.store(false, Ordering::Release);
                self.set_state(BreakerState::HalfOpen);
                Some(Permit::Probe)
            }
            BreakerState::Open | BreakerState::HalfOpen => None,
        }
    }

    /// Reports how a permitted call ended: `Ok`, a call the server answered (command errors
    /// included), or `Err` with the cause of a connection-class failure.
    pub(crate) fn record(&self, permit: Permit, outcome: Result<(), &dyn std::fmt::Display>) {
        match (permit, outcome) {
            (Permit::Normal, Ok(())) => {
                // Load first: a store on every success would bounce the cache line between cores.
                if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                    self.consecutive_failures.store(0, Ordering::Relaxed);
                }
            }
            (Permit::Normal, Err(cause)) => {
                let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                if failures >= self.threshold {
                    let _guard = self.lock();
                    if self.state() == BreakerState::Closed {
                        self.open(cause);
                    }
                }
            }
            (Permit::Probe, Ok(())) => {
                let _guard = self.lock();
                self.consecutive_failures.store(0, Ordering::Relaxed);
                self.set_state(BreakerState::Closed);
            }
            (Permit::Probe, Err(cause)) => {
                let _guard = self.lock();
                self.open(cause);
            }
        }
    }

    /// Opens, saying why once per transition (the cause never holds a password: errors are
    /// built from redacted URLs).
    fn open(&self, cause: &dyn std::fmt::Display) {
        self.since_nanos.store(self.now_nanos(), Ordering::Release);
        let message =
            "cache circuit breaker opened: Redis calls are skipped, reads go to the source";
        let cooldown_ms = self.cooldown.as_millis();
        match self.set_state(BreakerState::Open) {
            // An outage starts: said once. A failed probe only extends it (one per cooldown).
            Some(from @ BreakerState::Closed) => {
                tracing::warn!(?from, cooldown_ms, %cause, "{message}");
            }
            Some(from) => tracing::debug!(?from, cooldown_ms, %cause, "{message}"),
            None => {}
        }
    }

    /// Moves to `to`; answers the state it left, if it changed.
    fn set_state(&self, to: BreakerState) -> Option<BreakerState> {
        let from = BreakerState::from_u8(self.state.swap(to as u8, Ordering::AcqRel));
        if from == to {
            return None;
        }
        self.transitions.fetch_add(1, Ordering::Relaxed);
        match to {
            BreakerState::Open => {}
            BreakerState::HalfOpen => {
                tracing::debug!("cache circuit breaker half-open: probing Redis");
            }
            BreakerState::Closed => tracing::info!(?from, "cache circuit breaker closed"),
        }
        Some(from)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The mutex guards no data, so a poisoned lock is as good as a clean one.
        self.transition
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
