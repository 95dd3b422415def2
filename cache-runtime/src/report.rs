//! The periodic per-entity info line: hit ratio and counts over the last interval.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use crate::metrics::EntityMetrics;

/// Where the counters come from (a trait, so reporting does not depend on the cache).
pub(crate) trait MetricsSource: Send + Sync + 'static {
    fn metrics(&self) -> Vec<EntityMetrics>;
}

/// Runs until the cache is dropped.
pub(crate) async fn run<S: MetricsSource>(cache: Weak<S>, interval: Duration) {
    let mut previous: HashMap<(String, u32), EntityMetrics> = HashMap::new();
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = cache.upgrade() else { return };
        for now in inner.metrics() {
            let delta = match previous.get(&(now.entity.clone(), now.version)) {
                Some(before) => now.since(before),
                None => now.clone(),
            };
            let active = delta.hits + delta.misses + delta.loader_calls + delta.redis_errors > 0;
            if active {
                log(&delta);
            }
            previous.insert((now.entity.clone(), now.version), now);
        }
    }
}

fn log(delta: &EntityMetrics) {
    tracing::info!(
        entity = %delta.entity,
        hit_ratio = %delta
            .hit_ratio().map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "-".to_owned()),
        served_without_source = %delta
            .served_without_source_ratio().map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "-".to_owned()),
        hits = delta.hits,
        coalesced = delta.coalesced,
        misses = delta.misses,
        loader_calls = delta.loader_calls,
        fallbacks = delta.fallbacks,
        redis_errors = delta.redis_errors,
        "cache stats"
    );
}
