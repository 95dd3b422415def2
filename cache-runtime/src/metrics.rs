//! Per-entity counters: private atomics, read through a plain [`EntityMetrics`] snapshot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Live counters of one entity.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
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
    /// Whether the oversize warning was logged already: once per entity is enough.
    pub(crate) oversize_logged: AtomicBool,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self, entity: &str, version: u32) -> EntityMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EntityMetrics {
            entity: entity.to_owned(),
            version,
            hits: get(&self.hits),
            local_hits: get(&self.local_hits),
            misses: get(&self.misses),
            loader_calls: get(&self.loader_calls),
            coalesced: get(&self.coalesced),
            stale_sets_prevented: get(&self.stale_sets_prevented),
            stale_served: get(&self.stale_served),
            fail_safe: get(&self.fail_safe),
            early_refreshes: get(&self.early_refreshes),
            loader_errors: get(&self.loader_errors),
            redis_errors: get(&self.redis_errors),
            fallbacks: get(&self.fallbacks),
            oversize_skips: get(&self.oversize_skips),
            decode_failures: get(&self.decode_failures),
        }
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
    /// `get_or_set` calls served by the source because Redis was in trouble.
    pub fallbacks: u64,
    /// Values returned but not stored because they exceeded `max_value_bytes`.
    pub oversize_skips: u64,
    /// Stored values that could not be decoded (counted as misses too, then overwritten).
    pub decode_failures: u64,
}

impl EntityMetrics {
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
