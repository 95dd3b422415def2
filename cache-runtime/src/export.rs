//! Export through the `metrics` facade (feature `metrics`): every per-entity counter, the
//! breaker, the bus, pending invalidations and the local tier's size, published once a second
//! (and on demand with [`Cache::export_metrics`]), plus a histogram of Redis operation times
//! recorded per call. Names and labels are listed in docs/metrics.md; a test checks them.
//!
//! Counters are published as absolute values from the cache's own counters, so the hot path
//! pays nothing for them; only the latency histogram is recorded per call.

use std::sync::Weak;
use std::time::Duration;

use metrics::{counter, gauge};

use crate::breaker::BreakerState;
use crate::cache::{Cache, Inner};

/// How often the background task publishes.
pub(crate) const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// The histogram of Redis round trips, in seconds, labelled by outcome (`ok`, `error`,
/// `timeout`).
pub const REDIS_SECONDS: &str = "cache_redis_operation_seconds";

/// Bucket bounds (seconds) for [`REDIS_SECONDS`], from 100 µs to 1 s. Exporters that render a
/// histogram without buckets as a summary (`metrics-exporter-prometheus` does) need them set
/// for the `_bucket` series that latency quantiles are computed from:
/// `PrometheusBuilder::new().set_buckets_for_metric(Matcher::Full(REDIS_SECONDS.into()),
/// REDIS_SECONDS_BUCKETS)`.
pub const REDIS_SECONDS_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

impl Cache {
    /// Publishes the current counters and gauges through the `metrics` facade now (they are
    /// also published once a second): call it before rendering a scrape for exact figures.
    pub fn export_metrics(&self) {
        publish(self);
    }
}

fn publish(cache: &Cache) {
    let app = cache.config().app_prefix().to_owned();
    // Counters since the start: an exported counter never goes back (`reset_metrics` is for
    // callers of `Cache::metrics`).
    for m in cache.lifetime_metrics() {
        let labels = [
            ("app", app.clone()),
            ("entity", m.entity.clone()),
            ("version", m.version.to_string()),
        ];
        let tiered = |tier: &'static str| {
            let mut with_tier = labels.to_vec();
            with_tier.push(("tier", tier.to_owned()));
            with_tier
        };
        // Two series that add up to the hits: a sum over tiers counts each hit once.
        counter!("cache_hits_total", &tiered("redis")).absolute(m.redis_hits());
        counter!("cache_hits_total", &tiered("local")).absolute(m.local_hits);
        for (name, value) in [
            ("cache_misses_total", m.misses),
            ("cache_loader_calls_total", m.loader_calls),
            ("cache_coalesced_total", m.coalesced),
            ("cache_stale_served_total", m.stale_served),
            ("cache_fail_safe_total", m.fail_safe),
            ("cache_early_refreshes_total", m.early_refreshes),
            ("cache_loader_errors_total", m.loader_errors),
            ("cache_redis_errors_total", m.redis_errors),
            ("cache_fallbacks_total", m.fallbacks),
            ("cache_stale_sets_prevented_total", m.stale_sets_prevented),
            ("cache_oversize_skips_total", m.oversize_skips),
            ("cache_decode_failures_total", m.decode_failures),
        ] {
            counter!(name, &labels).absolute(value);
        }
    }
    let labels = [("app", app)];
    let breaker = match cache.breaker_state() {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    gauge!("cache_breaker_state", &labels).set(breaker);
    counter!("cache_breaker_transitions_total", &labels).absolute(cache.breaker_transitions());
    let bus = if cache.invalidation_bus_connected() {
        1.0
    } else {
        0.0
    };
    gauge!("cache_bus_connected", &labels).set(bus);
    gauge!("cache_pending_invalidations", &labels).set(cache.pending_invalidations() as f64);
    gauge!("cache_local_tier_entries", &labels).set(cache.local_tier_len() as f64);
}

/// The latency histogram's handles, registered with the recorder on a cache's first Redis call
/// (install the recorder before that), so a call records without building labels.
#[derive(Debug)]
pub(crate) struct RedisTimes {
    ok: metrics::Histogram,
    error: metrics::Histogram,
    timeout: metrics::Histogram,
}

impl RedisTimes {
    pub(crate) fn new(app: &str) -> Self {
        let handle = |outcome: &'static str| metrics::histogram!(REDIS_SECONDS, "app" => app.to_owned(), "outcome" => outcome);
        Self {
            ok: handle("ok"),
            error: handle("error"),
            timeout: handle("timeout"),
        }
    }

    /// Records one round trip that ended with `outcome` (`Ok(true)`: answered, `Ok(false)`: an
    /// error, `Err`: timed out).
    pub(crate) fn record(&self, outcome: Result<bool, ()>, took: Duration) {
        let histogram = match outcome {
            Ok(true) => &self.ok,
            Ok(false) => &self.error,
            Err(()) => &self.timeout,
        };
        histogram.record(took.as_secs_f64());
    }
}

/// Publishes once every [`EXPORT_EVERY`] until the cache is dropped.
pub(crate) async fn run(cache: Weak<Inner>) {
    let mut tick = tokio::time::interval(EXPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = cache.upgrade() else { return };
        publish(&Cache::from_inner(inner));
    }
}
