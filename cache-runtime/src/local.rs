//! The in-process tier: encoded values kept next to the code, bounded in bytes.
//!
//! quick_cache was chosen over moka on measured hit latency, insert cost and memory
//! (BENCHMARKS.md). Entries hold the stored bytes, decoded on each hit (so cached types need
//! not be `Clone`), and never outlive the freshness the value had in Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use quick_cache::Weighter;

/// Default bound of the in-process tier, in bytes of keys and values.
pub const DEFAULT_LOCAL_TIER_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    bytes: Arc<[u8]>,
    expires_ms: u64,
}

/// Weighs an entry by its bytes, plus a fixed allowance for the map's own overhead.
#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl Weighter<String, Entry> for ByBytes {
    fn weight(&self, key: &String, entry: &Entry) -> u64 {
        u64::try_from(key.len() + entry.bytes.len() + 64).unwrap_or(u64::MAX)
    }
}

pub(crate) struct LocalTier {
    entries: quick_cache::sync::Cache<String, Entry, ByBytes>,
    /// Entries may be served only while invalidation events can reach this instance.
    live: AtomicBool,
    /// Bumped before every removal: a reader that fetched a value before a removal must not
    /// insert it after (the value may be the one the removal was for).
    generation: AtomicU64,
}

impl std::fmt::Debug for LocalTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTier")
            .field("entries", &self.entries.len())
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl LocalTier {
    pub(crate) fn new(max_bytes: usize) -> Self {
        let estimated_items = (max_bytes / 1024).max(16);
        Self {
            entries: quick_cache::sync::Cache::with_weighter(
                estimated_items,
                u64::try_from(max_bytes).unwrap_or(u64::MAX),
                ByBytes,
            ),
            live: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// The bytes under `key` if they are still fresh at `now_ms` and the tier is live.
    pub(crate) fn get(&self, key: &str, now_ms: u64) -> Option<Arc<[u8]>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entry = self.entries.get(key)?;
        if entry.expires_ms <= now_ms {
            self.entries.remove(key);
            return None;
        }
        Some(entry.bytes)
    }

    /// What a reader records before fetching a value it may insert.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Inserts bytes fetched by a reader that recorded `seen` before fetching them, unless a
    /// removal started since (then they may be what it removed).
    pub(crate) fn insert(&self, key: &str, bytes: Arc<[u8]>, expires_ms: u64, seen: u64) {
        if !self.live.load(Ordering::Acquire) || self.generation() != seen {
            return;
        }
        self.entries
            .insert(key.to_owned(), Entry { bytes, expires_ms });
        // A removal that started between the check and the insert may have missed the entry.
        if self.generation() != seen {
            self.entries.remove(key);
        }
    }

    fn removing(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn remove(&self, key: &str) {
        self.removing();
        self.entries.remove(key);
    }

    /// Removes `key` and every key of its variants (`{key}:…`).
    pub(crate) fn remove_id(&self, key: &str) {
        self.removing();
        self.entries.remove(key);
        let variants = format!("{key}:");
        self.entries.retain(|k, _| !k.starts_with(&variants));
    }

    /// Removes every key starting with `prefix` (an entity or a whole version).
    pub(crate) fn remove_prefix(&self, prefix: &str) {
        self.removing();
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }

    /// Keeps readers that fetched before now from inserting (an invalidation checked at read
    /// time, such as a raised mark, is under way).
    pub(crate) fn fence(&self) {
        self.removing();
    }

    /// Turns serving on (subscribed) or off; off also drops everything, since invalidation
    /// events sent while unsubscribed are lost.
    pub(crate) fn set_live(&self, live: bool) {
        self.removing();
        if !live {
            self.live.store(false, Ordering::Release);
            self.entries.clear();
        } else {
            self.entries.clear();
            self.live.store(true, Ordering::Release);
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes() -> Arc<[u8]> {
        Arc::from(&b"value"[..])
    }

    fn live() -> LocalTier {
        let tier = LocalTier::new(1 << 20);
        tier.set_live(true);
        tier
    }

    #[test]
    fn entries_expire_with_their_freshness() {
        let tier = live();
        tier.insert("a:v1:p:1", bytes(), 1_000, tier.generation());
        assert!(tier.get("a:v1:p:1", 999).is_some());
        assert!(tier.get("a:v1:p:1", 1_000).is_none());
        assert_eq!(tier.len(), 0, "an expired entry is dropped");
    }

    #[test]
    fn an_id_goes_with_its_variants_and_nothing_else() {
        let tier = live();
        for key in ["a:v1:p:1", "a:v1:p:1:x", "a:v1:p:10", "a:v1:q:1"] {
            tier.insert(key, bytes(), u64::MAX, tier.generation());
        }
        tier.remove_id("a:v1:p:1");
        assert!(tier.get("a:v1:p:1", 0).is_none());
        assert!(tier.get("a:v1:p:1:x", 0).is_none());
        assert!(tier.get("a:v1:p:10", 0).is_some());
        tier.remove_prefix("a:v1:p:");
        assert!(tier.get("a:v1:p:10", 0).is_none());
        assert!(tier.get("a:v1:q:1", 0).is_some());
    }

    #[test]
    fn a_tier_that_is_not_live_serves_and_keeps_nothing() {
        let tier = live();
        tier.insert("k", bytes(), u64::MAX, tier.generation());
        tier.set_live(false);
        assert!(tier.get("k", 0).is_none());
        tier.insert("k", bytes(), u64::MAX, tier.generation());
        tier.set_live(true);
        assert!(tier.get("k", 0).is_none(), "what was there before is gone");
    }

    #[test]
    fn a_value_fetched_before_a_removal_is_not_inserted_after_it() {
        let tier = live();
        let seen = tier.generation();
        tier.remove("k");
        tier.insert("k", bytes(), u64::MAX, seen);
        assert!(tier.get("k", 0).is_none());
        tier.insert("k", bytes(), u64::MAX, tier.generation());
        assert!(
            tier.get("k", 0).is_some(),
            "a read that started after it inserts"
        );
    }

    #[test]
    fn the_byte_bound_holds() {
        let tier = LocalTier::new(64 * 1024);
        tier.set_live(true);
        for i in 0..1_000 {
            tier.insert(
                &format!("k{i}"),
                Arc::from(vec![0u8; 1024]),
                u64::MAX,
                tier.generation(),
            );
        }
        assert!(tier.len() < 64, "{} entries of 1 KiB in 64 KiB", tier.len());
    }
}
