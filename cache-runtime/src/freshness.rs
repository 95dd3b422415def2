//! Freshness: how long a value is served, how long after that it may still be served stale,
//! and when a read refreshes it early (XFetch, Vattani et al., VLDB 2015).

use std::time::Duration;

use crate::envelope::Header;
use crate::ttl::Ttl;

/// Default XFetch β: 1 is the paper's choice; larger refreshes earlier.
pub const DEFAULT_EARLY_REFRESH_BETA: f64 = 1.0;

/// How a read-through call treats time. Build it with [`ReadOptions::new`]; every setter is
/// `const`, so the macros keep one in a `static`.
///
/// | option | default | effect |
/// | --- | --- | --- |
/// | `ttl` | (required) | how long a value is fresh |
/// | `stale(grace)` | off | after `ttl`, serve the old value for up to `grace` while one caller refreshes it, and whenever the source fails (fail-safe) |
/// | `early_refresh(β)` | off | a fresh read may refresh ahead of expiry, more likely as expiry nears and the slower the source (XFetch) |
/// | `refresh_timeout(t)` | off | a refresh that has an old value to fall back on gives up after `t` and serves it |
/// | `local()` | off | also keep values in the in-process tier |
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct ReadOptions {
    pub(crate) ttl: Ttl,
    pub(crate) stale: Option<Duration>,
    pub(crate) early_refresh: Option<f64>,
    pub(crate) refresh_timeout: Option<Duration>,
    pub(crate) local: bool,
}

impl ReadOptions {
    /// Values fresh for `ttl`; no stale serving, no early refresh.
    pub const fn new(ttl: Ttl) -> Self {
        Self {
            ttl,
            stale: None,
            early_refresh: None,
            refresh_timeout: None,
            local: false,
        }
    }

    /// Also keep values in the in-process tier: a hit there costs no Redis round trip. Other
    /// instances' writes reach it through the invalidation bus.
    pub const fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Keeps values in Redis `grace` beyond their TTL, to be served while they are refreshed
    /// (stale-while-revalidate) and when the source fails (fail-safe).
    pub const fn stale(mut self, grace: Duration) -> Self {
        self.stale = Some(grace);
        self
    }

    /// Probabilistic early refresh with parameter `beta` (1 is the usual choice).
    pub const fn early_refresh(mut self, beta: f64) -> Self {
        self.early_refresh = Some(beta);
        self
    }

    /// With an old value to fall back on, a refresh gives up after `timeout` and serves it.
    pub const fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = Some(timeout);
        self
    }
}

/// XFetch: refresh now if `now - cost · β · ln(u) ≥ expiry`, for `u` uniform in (0, 1].
/// A value that took longer to compute is refreshed earlier; at `β = 0` never early.
pub(crate) fn refresh_early(header: &Header, now_ms: u64, beta: f64, u: f64) -> bool {
    if now_ms >= header.fresh_until_ms {
        return true;
    }
    let u = u.clamp(f64::MIN_POSITIVE, 1.0);
    #[allow(clippy::cast_precision_loss)] // milliseconds stay far below 2^52
    let head_start = f64::from(header.cost_ms) * beta * -u.ln();
    #[allow(clippy::cast_precision_loss)]
    let left = (header.fresh_until_ms - now_ms) as f64;
    head_start >= left
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fresh_until_ms: u64, cost_ms: u32) -> Header {
        let mut header = Header::new(1, Duration::ZERO, Duration::ZERO);
        header.fresh_until_ms = fresh_until_ms;
        header.cost_ms = cost_ms;
        header
    }

    #[test]
    fn far_from_expiry_a_cheap_value_is_not_refreshed() {
        // 10 s left, 10 ms to compute: would need u < e^-1000.
        assert!(!refresh_early(&header(20_000, 10), 10_000, 1.0, 0.01));
    }

    #[test]
    fn near_expiry_a_low_draw_triggers_a_refresh() {
        // 100 ms left, 100 ms cost: refresh when -ln(u) >= 1, i.e. u <= 1/e.
        let h = header(10_100, 100);
        assert!(refresh_early(&h, 10_000, 1.0, 0.30));
        assert!(!refresh_early(&h, 10_000, 1.0, 0.40));
    }

    #[test]
    fn beta_scales_the_head_start() {
        let h = header(10_100, 100);
        assert!(!refresh_early(&h, 10_000, 0.5, 0.30));
        assert!(refresh_early(&h, 10_000, 2.0, 0.40));
        assert!(
            !refresh_early(&h, 10_000, 0.0, 1e-9),
            "beta 0 never refreshes early"
        );
    }

    #[test]
    fn an_expired_value_always_refreshes_and_a_zero_draw_does_not_overflow() {
        assert!(refresh_early(&header(10_000, 0), 10_000, 1.0, 0.99));
        assert!(refresh_early(&header(10_100, 100), 10_000, 1.0, 0.0));
    }
}
