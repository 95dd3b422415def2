//! Per-entity counters: private atomics, read through a plain [`EntityMetrics`] snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Live counters of one entity, one set per shard (see [`crate::thread_shard`]): every call
/// bumps a counter, and one set shared by all cores costs multi-thread runtimes throughput.
#[derive(Debug)]
pub(crate) struct ShardedCounters {
    shards: Box<[PaddedCounters]>,
    /// Whether the oversize warning was logged already: once per entity is enough.
    pub(crate) oversize_logged: AtomicBool,
    /// Whether the decode-failure warning was logged already.
    pub(crate) decode_failure_logged: AtomicBool,
    /// The counts at the last reset (`Entity::reset_metrics`): what a caller's snapshot is
    /// counted from. The counters themselves run on, for the log and the exporter.
    baseline: std::sync::Mutex<Option<EntityMetrics>>,
}

/// One shard, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedCounters(Counters);

/// Shards per entity: a few more than the cores of a typical service host.
const COUNTER_SHARDS: usize = 8;

impl Default for ShardedCounters {
    fn default() -> Self {
        Self {
            shards: (0..COUNTER_SHARDS)
                .map(|_| PaddedCounters::default())
                .collect(),
            oversize_logged: AtomicBool::new(false),
            decode_failure_logged: AtomicBool::new(false),
            baseline: std::sync::Mutex::new(None),
        }
    }
}

impl ShardedCounters {
    /// The calling thread's counters.
    pub(crate) fn local(&self) -> &Counters {
        &self.shards[crate::thread_shard::index(self.shards.len())].0
    }

    /// From now on, [`Self::since_reset`] counts from the counts of now.
    pub(crate) fn reset(&self, entity: &str, version: u32) {
        let now = self.snapshot(entity, version);
        *self
            .baseline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
    }

    /// The counts since the last [`Self::reset`] (since the start, without one).
    pub(crate) fn since_reset(&self, entity: &str, version: u32) -> EntityMetrics {
        let now = self.snapshot(entity, version);
        match &*self
            .baseline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(baseline) => now.since(baseline),
            None => now,
        }
    }

    /// The sums over every shard.
    pub(crate) fn snapshot(&self, entity: &str, version: u32) -> EntityMetrics {
        let mut total = EntityMetrics {
            entity: entity.to_owned(),
            version,
            ..EntityMetrics::default()
        };
        for shard in self.shards.iter() {
            shard.0.add_to(&mut total);
        }
        total
    }
}

/// One shard's counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Hits served by Redis. A local hit is counted in `local_hits` alone (one atomic add on
    /// the fastest path); the snapshot's `hits` is the sum.
    pub(crate) redis_hits: AtomicU64,
    pub(crate) local_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) loader_calls: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) stale_sets_prevented: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) fail_safe: AtomicU64,
    pub(crate) early_refreshes: AtomicU64,
    pub(crate) loader_errors: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
    pub(crate) oversize_skips: AtomicU64,
    pub(crate) decode_failures: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn add_to(&self, total: &mut EntityMetrics) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        total.hits += get(&self.redis_hits) + get(&self.local_hits);
        total.local_hits += get(&self.local_hits);
        total.misses += get(&self.misses);
        total.loader_calls += get(&self.loader_calls);
        total.coalesced += get(&self.coalesced);
        total.stale_sets_prevented += get(&self.stale_sets_prevented);
        total.stale_served += get(&self.stale_served);
        total.fail_safe += get(&self.fail_safe);
        total.early_refreshes += get(&self.early_refreshes);
        total.loader_errors += get(&self.loader_errors);
        total.redis_errors += get(&self.redis_errors);
        total.fallbacks += get(&self.fallbacks);
        total.oversize_skips += get(&self.oversize_skips);
        total.decode_failures += get(&self.decode_failures);
    }
}

/// A point-in-time copy of one entity's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntityMetrics {
    /// The entity name.
    pub entity: String,
    /// The schema version of the entity's keys.
    pub version: u32,
    /// Reads answered from the cache (Redis or the in-process tier).
    pub hits: u64,
    /// Of those, reads answered by the in-process tier.
    pub local_hits: u64,
    /// Reads that found nothing usable in Redis.
    pub misses: u64,
    /// Calls of the source (loader), for any reason.
    pub loader_calls: u64,
    /// Callers that waited for another caller's loader call on the same key (single flight).
    pub coalesced: u64,
    /// Loaded values not stored because a write or invalidation voided the loader's lease.
    pub stale_sets_prevented: u64,
    /// Old values served past their TTL while another caller refreshed them.
    pub stale_served: u64,
    /// Old values served because the source failed or exceeded the refresh timeout.
    pub fail_safe: u64,
    /// Fresh reads that drew an early refresh (XFetch).
    pub early_refreshes: u64,
    /// Loader calls that returned an error.
    pub loader_errors: u64,
    /// Redis operations that failed (including timeouts and an open breaker).
    pub redis_errors: u64,
    /// Reads served by the source because Redis was in trouble, or could not be trusted yet
    /// (an invalidation made during an outage waiting for replay): neither hits nor misses.
    pub fallbacks: u64,
    /// Values returned but not stored because they exceeded `max_value_bytes`.
    pub oversize_skips: u64,
    /// Stored values that could not be decoded (counted as misses too, then overwritten).
    pub decode_failures: u64,
}

impl EntityMetrics {
    /// Of the hits, those Redis answered: `hits − local_hits`.
    pub fn redis_hits(&self) -> u64 {
        self.hits.saturating_sub(self.local_hits)
    }

    /// Hits over hits + misses, or `None` before the first read.
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.hits + self.misses;
        // Counts stay far below 2^52, where the f64 conversion would round.
        #[allow(clippy::cast_precision_loss)]
        (reads > 0).then(|| self.hits as f64 / reads as f64)
    }

    /// Of the reads, the share answered without a source call of their own: hits, and callers
    /// that waited for another caller's load of the same key (`coalesced`, counted as misses
    /// too since Redis had nothing for them). `None` before the first read.
    pub fn served_without_source_ratio(&self) -> Option<f64> {
        let reads = self.hits + self.misses;
        let spared = (self.hits + self.coalesced).min(reads);
        #[allow(clippy::cast_precision_loss)]
        (reads > 0).then(|| spared as f64 / reads as f64)
    }

    /// The counts accumulated since `earlier` (a snapshot of the same entity).
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            entity: self.entity.clone(),
            version: self.version,
            hits: self.hits.saturating_sub(earlier.hits),
            local_hits: self.local_hits.saturating_sub(earlier.local_hits),
            misses: self.misses.saturating_sub(earlier.misses),
            loader_calls: self.loader_calls.saturating_sub(earlier.loader_calls),
            coalesced: self.coalesced.saturating_sub(earlier.coalesced),
            stale_sets_prevented: self
                .stale_sets_prevented
                .saturating_sub(earlier.stale_sets_prevented),
            stale_served: self.stale_served.saturating_sub(earlier.stale_served),
            fail_safe: self.fail_safe.saturating_sub(earlier.fail_safe),
            early_refreshes: self.early_refreshes.saturating_sub(earlier.early_refreshes),
            loader_errors: self.loader_errors.saturating_sub(earlier.loader_errors),
            redis_errors: self.redis_errors.saturating_sub(earlier.redis_errors),
            fallbacks: self.fallbacks.saturating_sub(earlier.fallbacks),
            oversize_skips: self.oversize_skips.saturating_sub(earlier.oversize_skips),
            decode_failures: self.decode_failures.saturating_sub(earlier.decode_failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_every_thread_add_up() {
        let counters = ShardedCounters::default();
        std::thread::scope(|scope| {
            for _ in 0..COUNTER_SHARDS + 3 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        bump(&counters.local().redis_hits);
                    }
                    bump(&counters.local().local_hits);
                    bump(&counters.local().misses);
                });
            }
        });
        let total = counters.snapshot("product", 1);
        let threads = COUNTER_SHARDS as u64 + 3;
        assert_eq!(total.hits, 1_001 * threads, "Redis and local hits");
        assert_eq!(
            (total.local_hits, total.redis_hits()),
            (threads, 1_000 * threads)
        );
        assert_eq!(total.misses, COUNTER_SHARDS as u64 + 3);
        assert_eq!((total.entity.as_str(), total.version), ("product", 1));
    }
}
