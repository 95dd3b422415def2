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

/// The values of one id kept here: its own (variant `""`) and its variants', so that an id's
/// invalidation removes them all in one step, whatever the size of the tier.
#[derive(Debug, Clone, Default)]
pub(crate) struct Family {
    members: Vec<Member>,
}

#[derive(Debug, Clone)]
struct Member {
    variant: Box<str>,
    bytes: Arc<[u8]>,
    expires_ms: u64,
}

impl Family {
    fn find(&self, variant: &str) -> Option<&Member> {
        self.members.iter().find(|m| &*m.variant == variant)
    }

    /// A copy without `variant` and without members expired at `now_ms`.
    fn without(&self, variant: &str, now_ms: u64) -> Self {
        Self {
            members: self
                .members
                .iter()
                .filter(|m| &*m.variant != variant && m.expires_ms > now_ms)
                .cloned()
                .collect(),
        }
    }
}

/// Weighs a family by its bytes, plus a fixed allowance per member for the map's own overhead.
#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl Weighter<String, Arc<Family>> for ByBytes {
    fn weight(&self, key: &String, family: &Arc<Family>) -> u64 {
        let members: usize = family
            .members
            .iter()
            .map(|m| key.len() + m.variant.len() + m.bytes.len() + 64)
            .sum();
        u64::try_from(members).unwrap_or(u64::MAX).max(1)
    }
}

/// Splits `{app}:v{N}:{entity}:{id}[:{variant}]` into the id's key and the variant (`""` for
/// none). Ids never hold a raw `:` (escaping encodes it in values, templates in literals), so
/// the fourth `:` is where a variant starts.
pub(crate) fn split(key: &str) -> (&str, &str) {
    match key.match_indices(':').nth(3) {
        Some((at, _)) => (&key[..at], &key[at + 1..]),
        None => (key, ""),
    }
}

pub(crate) struct LocalTier {
    /// By id key: each id's family of values.
    families: quick_cache::sync::Cache<String, Arc<Family>, ByBytes>,
    /// Entries may be served only while invalidation events can reach this instance.
    live: AtomicBool,
    /// Bumped before every removal of many ids (a prefix, a fence, going live or not): a
    /// reader that fetched a value before a removal must not insert it after (the value may be
    /// the one the removal was for).
    every_id: AtomicU64,
    /// The same, per shard of ids, bumped before a removal of one id or one of its variants:
    /// a write of one product keeps only reads of the ids in its shard from inserting, not
    /// every read in flight.
    by_id: Box<[AtomicU64]>,
}

/// Shards of [`LocalTier::by_id`]: enough that a steady stream of writes rarely fences the
/// reads of other ids.
const GENERATION_SHARDS: usize = 64;

/// The shard of an id key (FNV-1a: a few instructions per byte, on a Redis read only).
fn generation_shard(id: &str) -> usize {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    // Lossless: the remainder is below the shard count.
    (hash % GENERATION_SHARDS as u64) as usize
}

impl std::fmt::Debug for LocalTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTier")
            .field("ids", &self.families.len())
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl LocalTier {
    pub(crate) fn new(max_bytes: usize) -> Self {
        let estimated_items = (max_bytes / 1024).max(16);
        Self {
            families: quick_cache::sync::Cache::with_weighter(
                estimated_items,
                u64::try_from(max_bytes).unwrap_or(u64::MAX),
                ByBytes,
            ),
            live: AtomicBool::new(false),
            every_id: AtomicU64::new(0),
            by_id: (0..GENERATION_SHARDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The bytes under `key` if they are still fresh at `now_ms` and the tier is live.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &str, now_ms: u64) -> Option<Arc<[u8]>> {
        let (id, variant) = split(key);
        self.get_member(id, variant, now_ms)
    }

    /// [`Self::get`] of the key of `id` with `variant` (`""` for none), split already.
    pub(crate) fn get_member(&self, id: &str, variant: &str, now_ms: u64) -> Option<Arc<[u8]>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let family = self.families.get(id)?;
        let member = family.find(variant)?;
        if member.expires_ms <= now_ms {
            return None;
        }
        Some(member.bytes.clone())
    }

    /// What a reader records before fetching the value under `key` it may insert: it changes
    /// with every removal that may concern the key (both counters only rise, so their sum
    /// changes whenever either does).
    pub(crate) fn generation(&self, key: &str) -> u64 {
        let (id, _) = split(key);
        self.every_id
            .load(Ordering::Acquire)
            .wrapping_add(self.by_id[generation_shard(id)].load(Ordering::Acquire))
    }

    /// Inserts bytes fetched by a reader that recorded `seen` before fetching them, unless a
    /// removal that may concern them started since (then they may be what it removed).
    pub(crate) fn insert(
        &self,
        key: &str,
        bytes: Arc<[u8]>,
        expires_ms: u64,
        seen: u64,
        now_ms: u64,
    ) {
        if !self.live.load(Ordering::Acquire) || self.generation(key) != seen {
            return;
        }
        let (id, variant) = split(key);
        let mut family = self
            .families
            .get(id)
            .map_or_else(Family::default, |f| f.without(variant, now_ms));
        family.members.push(Member {
            variant: variant.into(),
            bytes,
            expires_ms,
        });
        self.families.insert(id.to_owned(), Arc::new(family));
        // A removal that started meanwhile may have read the family before this write and had
        // its own write replaced by it: drop the whole family rather than keep what it removed.
        if self.generation(key) != seen {
            self.families.remove(id);
        }
    }

    fn removing(&self) {
        self.every_id.fetch_add(1, Ordering::AcqRel);
    }

    fn removing_id(&self, id: &str) {
        self.by_id[generation_shard(id)].fetch_add(1, Ordering::AcqRel);
    }

    /// Removes the value under `key` alone (an id's own value keeps its variants).
    pub(crate) fn remove(&self, key: &str) {
        let (id, variant) = split(key);
        self.removing_id(id);
        if let Some(family) = self.families.get(id) {
            let rest = family.without(variant, 0);
            if rest.members.is_empty() {
                self.families.remove(id);
            } else {
                self.families.insert(id.to_owned(), Arc::new(rest));
            }
        }
    }

    /// Removes the value of the id whose key is `key` and every one of its variants: one step.
    pub(crate) fn remove_id(&self, key: &str) {
        self.removing_id(key);
        self.families.remove(key);
    }

    /// Removes every key starting with `prefix` (an entity or a whole version; operators' and
    /// deploys' calls, so a pass over the tier is acceptable).
    pub(crate) fn remove_prefix(&self, prefix: &str) {
        self.removing();
        self.families.retain(|id, _| !id.starts_with(prefix));
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
            self.families.clear();
        } else {
            self.families.clear();
            self.live.store(true, Ordering::Release);
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// How many values the tier holds.
    pub(crate) fn len(&self) -> usize {
        let mut values = 0;
        for (_, family) in self.families.iter() {
            values += family.members.len();
        }
        values
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
        tier.insert("a:v1:p:1", bytes(), 1_000, tier.generation("a:v1:p:1"), 0);
        assert!(tier.get("a:v1:p:1", 999).is_some());
        assert!(tier.get("a:v1:p:1", 1_000).is_none());
    }

    #[test]
    fn an_id_and_its_variants_live_side_by_side() {
        let tier = live();
        for key in ["a:v1:p:1", "a:v1:p:1:x", "a:v1:p:1:y:z"] {
            tier.insert(key, bytes(), u64::MAX, tier.generation(key), 0);
        }
        assert_eq!(tier.len(), 3);
        assert_eq!(split("a:v1:p:1:y:z"), ("a:v1:p:1", "y:z"));
        tier.remove("a:v1:p:1");
        assert!(tier.get("a:v1:p:1", 0).is_none());
        assert!(tier.get("a:v1:p:1:x", 0).is_some(), "a key alone goes");
        tier.remove("a:v1:p:1:x");
        assert!(tier.get("a:v1:p:1:y:z", 0).is_some());
        assert_eq!(tier.len(), 1);
    }

    #[test]
    fn an_id_goes_with_its_variants_and_nothing_else() {
        let tier = live();
        for key in ["a:v1:p:1", "a:v1:p:1:x", "a:v1:p:10", "a:v1:q:1"] {
            tier.insert(key, bytes(), u64::MAX, tier.generation(key), 0);
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
        tier.insert("k", bytes(), u64::MAX, tier.generation("k"), 0);
        tier.set_live(false);
        assert!(tier.get("k", 0).is_none());
        tier.insert("k", bytes(), u64::MAX, tier.generation("k"), 0);
        tier.set_live(true);
        assert!(tier.get("k", 0).is_none(), "what was there before is gone");
    }

    #[test]
    fn a_value_fetched_before_a_removal_is_not_inserted_after_it() {
        let tier = live();
        let seen = tier.generation("k");
        tier.remove("k");
        tier.insert("k", bytes(), u64::MAX, seen, 0);
        assert!(tier.get("k", 0).is_none());
        tier.insert("k", bytes(), u64::MAX, tier.generation("k"), 0);
        assert!(
            tier.get("k", 0).is_some(),
            "a read that started after it inserts"
        );
    }

    #[test]
    fn a_removal_fences_the_reads_of_its_id_and_its_variants_only() {
        let tier = live();
        let key = "a:v1:p:1";
        // Another id in another shard of generations.
        let other = (2..)
            .map(|id| format!("a:v1:p:{id}"))
            .find(|other| generation_shard(other) != generation_shard(key))
            .expect("some id in another shard");
        let seen = [key, "a:v1:p:1:x", other.as_str()].map(|k| tier.generation(k));
        tier.remove("a:v1:p:1:y");
        tier.insert(key, bytes(), u64::MAX, seen[0], 0);
        tier.insert("a:v1:p:1:x", bytes(), u64::MAX, seen[1], 0);
        tier.insert(&other, bytes(), u64::MAX, seen[2], 0);
        assert!(tier.get(key, 0).is_none(), "the id of the removed variant");
        assert!(tier.get("a:v1:p:1:x", 0).is_none(), "another variant of it");
        assert!(tier.get(&other, 0).is_some(), "another id inserts");

        let seen = tier.generation(&other);
        tier.fence();
        tier.insert(&other, bytes(), u64::MAX, seen, 0);
        assert!(tier.get(&other, 0).is_some(), "the value from before stays");
        tier.remove_id(&other);
        let seen = tier.generation(&other);
        tier.fence();
        tier.insert(&other, bytes(), u64::MAX, seen, 0);
        assert!(tier.get(&other, 0).is_none(), "a fence keeps every id out");
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
                tier.generation(&format!("k{i}")),
                0,
            );
        }
        assert!(tier.len() < 64, "{} entries of 1 KiB in 64 KiB", tier.len());
    }
}
