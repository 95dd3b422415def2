//! Invalidation marks: what makes entity-wide and tag invalidation O(1) in Redis.
//!
//! Invalidating an entity or a tag writes one number, its *mark*, instead of deleting its keys.
//! Marks come from one per-app *epoch* in Redis that only grows (the larger of its previous
//! value + 1 and Redis' own clock in µs, so it stays ahead of every number it handed out even
//! if the epoch key itself is evicted). Every stored value records the epoch its writer knew
//! when its load started; a value is served only while that epoch is at least the marks of its
//! entity and of each of its tags. The reasoning, with its failure cases, is in
//! docs/invalidation.md.
//!
//! Each instance keeps the marks it uses in process. A mark read from Redis is trusted for as
//! long as the invalidation bus subscription it was read under lasts: every later change
//! reaches this instance as an event. While the bus is down every check reads Redis.

use crate::script::Script;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Marks outlive every value that may depend on them (the longest TTL class is a day); reading
/// or setting a mark extends it. A mark that expired or was evicted anyway is recreated as
/// "invalidated now", which is never wrong.
pub(crate) const MARK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many tag marks an instance keeps in process; one that fell out is read again.
const TAG_CELLS: usize = 100_000;

/// Hands out the next epoch, above the caller's highest known. KEYS: the app's epoch key.
/// ARGV: the highest epoch the caller knows.
pub(crate) static BUMP_EPOCH: Script = Script::new(
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local known = tonumber(ARGV[1]) or 0
local next = string.format('%.0f', math.max(current + 1, now, known + 1))
redis.call('SET', KEYS[1], next)
return next
",
);

/// Raises a mark to ARGV[1] (never lowers it: invalidations may land out of order) and keeps it
/// alive for ARGV[2] ms. KEYS: the mark.
pub(crate) static RAISE_MARK: Script = Script::new(
    r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2], 'GT')
end
return 1
",
);

/// One mark as this instance knows it.
#[derive(Debug, Default)]
pub(crate) struct MarkCell {
    /// The highest value seen for it.
    value: AtomicU64,
    /// The bus session it was read from Redis in; trusted only while that session lasts.
    read_in: AtomicU64,
    /// Non-zero while an invalidation of it waits for replay: the local sequence number at
    /// which it failed. Nothing it covers is valid meanwhile.
    blocked_since: AtomicU64,
}

impl MarkCell {
    /// The mark to compare with, if it can be trusted in `session`.
    pub(crate) fn trusted(&self, session: u64) -> Option<u64> {
        if self.blocked_since.load(Ordering::Acquire) != 0 {
            return Some(u64::MAX);
        }
        (session % 2 == 1 && self.read_in.load(Ordering::Acquire) == session)
            .then(|| self.value.load(Ordering::Acquire))
    }

    /// The mark to compare with after reading `value` from Redis in `session`.
    pub(crate) fn learn(&self, value: u64, session: u64, still_session: u64) -> u64 {
        let value = self.value.fetch_max(value, Ordering::AcqRel).max(value);
        if session % 2 == 1 && session == still_session {
            self.read_in.store(session, Ordering::Release);
        }
        if self.blocked_since.load(Ordering::Acquire) != 0 {
            u64::MAX
        } else {
            value
        }
    }

    /// An event or this instance's own invalidation raised the mark.
    pub(crate) fn raise(&self, value: u64) {
        self.value.fetch_max(value, Ordering::AcqRel);
    }

    /// An invalidation of this mark failed at local sequence `seq`: block until one succeeds.
    pub(crate) fn block(&self, seq: u64) {
        let _ = self
            .blocked_since
            .compare_exchange(0, seq, Ordering::AcqRel, Ordering::Acquire);
    }

    /// An invalidation that started at local sequence `seq` reached Redis: it covers every
    /// failure before it.
    pub(crate) fn unblock(&self, seq: u64) {
        let blocked = self.blocked_since.load(Ordering::Acquire);
        if blocked != 0 && blocked < seq {
            let _ = self.blocked_since.compare_exchange(
                blocked,
                0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// The marks this instance uses, the epoch it knows, and the bus session.
pub(crate) struct Marks {
    /// The highest epoch seen: what a load starting now records.
    known: AtomicU64,
    /// Odd while the bus is subscribed; bumped at every subscription and every loss of it.
    session: AtomicU64,
    /// Orders failures and attempts of invalidations in this process.
    seq: AtomicU64,
    /// Entity marks by mark key (few; each `Entity` holds its own cell too).
    entities: RwLock<HashMap<String, Arc<MarkCell>>>,
    /// Tag marks by tag, bounded.
    tags: quick_cache::sync::Cache<String, Arc<MarkCell>>,
}

impl std::fmt::Debug for Marks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Marks")
            .field("known", &self.known.load(Ordering::Relaxed))
            .field("session", &self.session.load(Ordering::Relaxed))
            .field("tags", &self.tags.len())
            .finish_non_exhaustive()
    }
}

impl Default for Marks {
    fn default() -> Self {
        Self {
            known: AtomicU64::new(0),
            session: AtomicU64::new(0),
            seq: AtomicU64::new(1),
            entities: RwLock::default(),
            tags: quick_cache::sync::Cache::new(TAG_CELLS),
        }
    }
}

impl Marks {
    pub(crate) fn session(&self) -> u64 {
        self.session.load(Ordering::Acquire)
    }

    /// Whether events arrive now (subscribed, and not late).
    pub(crate) fn bus_live(&self) -> bool {
        self.session() % 2 == 1
    }

    /// The bus subscribed (`true`) or lost its subscription: marks read before are no longer
    /// trusted either way (events may have been missed in between).
    pub(crate) fn bus_changed(&self, subscribed: bool) {
        let session = self.session.load(Ordering::Acquire);
        let odd = session % 2 == 1;
        let next = if odd == subscribed {
            session + 2
        } else {
            session + 1
        };
        self.session.store(next, Ordering::Release);
    }

    pub(crate) fn known(&self) -> u64 {
        self.known.load(Ordering::Acquire)
    }

    pub(crate) fn saw(&self, epoch: u64) {
        self.known.fetch_max(epoch, Ordering::AcqRel);
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel)
    }

    /// The cell of the entity mark `mark_key`, shared with every `Entity` of that key.
    pub(crate) fn entity_cell(&self, mark_key: &str) -> Arc<MarkCell> {
        if let Some(cell) = self.read_entities().get(mark_key) {
            return Arc::clone(cell);
        }
        let mut entities = self
            .entities
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(entities.entry(mark_key.to_owned()).or_default())
    }

    /// The cell of an entity mark if this instance uses that entity.
    pub(crate) fn entity_cell_if_used(&self, mark_key: &str) -> Option<Arc<MarkCell>> {
        self.read_entities().get(mark_key).cloned()
    }

    fn read_entities(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<MarkCell>>> {
        self.entities
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cell of `tag`'s mark (created untrusted if absent).
    pub(crate) fn tag_cell(&self, tag: &str) -> Arc<MarkCell> {
        if let Some(cell) = self.tags.get(tag) {
            return cell;
        }
        self.tags
            .get_or_insert_with(tag, || Ok::<_, ()>(Arc::default()))
            .unwrap_or_default()
    }

    /// The cell of `tag`'s mark if this instance holds one.
    pub(crate) fn tag_cell_if_used(&self, tag: &str) -> Option<Arc<MarkCell>> {
        self.tags.get(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_trusted_only_in_the_bus_session_it_was_read_in() {
        let marks = Marks::default();
        let cell = MarkCell::default();
        assert_eq!(cell.trusted(marks.session()), None, "never read");
        let before = marks.session();
        assert_eq!(cell.learn(5, before, marks.session()), 5);
        assert_eq!(
            cell.trusted(marks.session()),
            None,
            "read while unsubscribed"
        );
        marks.bus_changed(true);
        let live = marks.session();
        cell.learn(5, live, marks.session());
        assert_eq!(cell.trusted(marks.session()), Some(5));
        cell.raise(9);
        assert_eq!(cell.trusted(marks.session()), Some(9), "events raise it");
        cell.raise(3);
        assert_eq!(cell.trusted(marks.session()), Some(9), "never lowered");
        marks.bus_changed(false);
        assert_eq!(cell.trusted(marks.session()), None, "bus lost");
        marks.bus_changed(true);
        assert_eq!(
            cell.trusted(marks.session()),
            None,
            "a new session reads again"
        );
    }

    #[test]
    fn a_failed_invalidation_blocks_until_a_later_one_succeeds() {
        let marks = Marks::default();
        marks.bus_changed(true);
        let cell = MarkCell::default();
        cell.learn(5, marks.session(), marks.session());
        let early = marks.next_seq();
        let failed_at = marks.next_seq();
        cell.block(failed_at);
        assert_eq!(cell.trusted(marks.session()), Some(u64::MAX));
        cell.unblock(early);
        assert_eq!(
            cell.trusted(marks.session()),
            Some(u64::MAX),
            "an attempt older than the failure does not cover it"
        );
        cell.unblock(marks.next_seq());
        assert_eq!(cell.trusted(marks.session()), Some(5));
    }
}
