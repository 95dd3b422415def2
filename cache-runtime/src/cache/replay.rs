//! Invalidations are not lost: what could not reach Redis is kept (bounded) and replayed once
//! Redis answers again; past the bound, the affected entities are invalidated wholesale.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Cache, Inner};
use crate::entity::{CacheKey, Entity};
use crate::error::CacheError;

/// How often a non-empty queue is retried when nothing else wakes it.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// How many entities and tags are kept apart past the queue's capacity; beyond, the whole app
/// is invalidated on recovery, so memory stays bounded however many distinct tags fail.
const MAX_OVERFLOWED: usize = 1_000;
const WHOLE_APP: &str = "the whole app";
/// How often a backlog is summarised in the log while it lasts.
const SUMMARY_EVERY: Duration = Duration::from_secs(30);
/// How often a shutdown flush retries while Redis does not answer.
const FLUSH_RETRY: Duration = Duration::from_millis(20);

/// What an invalidation removes.
#[derive(Debug, Clone)]
pub(crate) enum Intent {
    Key(CacheKey),
    Id {
        entity: Entity,
        escaped_id: String,
    },
    Entity(Entity),
    /// The keys of an entity matching a glob over their id and variant.
    Matching(Entity, String),
    /// The keys carrying a tag (rendered), whatever their entity.
    Tag(String),
    /// Every key of the app.
    All,
}

impl Intent {
    pub(crate) fn entity(&self) -> Option<&Entity> {
        match self {
            Self::Key(key) => Some(key.entity()),
            Self::Id { entity, .. } | Self::Entity(entity) | Self::Matching(entity, _) => {
                Some(entity)
            }
            Self::Tag(_) | Self::All => None,
        }
    }

    /// What stands in for it when the queue is full: its whole entity, or the tag itself.
    fn wholesale(&self) -> (String, Intent) {
        match self.entity() {
            Some(entity) => (
                format!("entity {}", entity.pattern()),
                Intent::Entity(entity.clone()),
            ),
            None => (format!("{self}"), self.clone()),
        }
    }
}

impl std::fmt::Display for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(key) => write!(f, "key {key}"),
            Self::Id { entity, escaped_id } => {
                write!(f, "id {} of {}", escaped_id, entity.name())
            }
            Self::Entity(entity) => write!(f, "entity {}", entity.pattern()),
            Self::Matching(entity, glob) => write!(f, "keys of {} matching {glob}", entity.name()),
            Self::Tag(tag) => write!(f, "tag {tag}"),
            Self::All => f.write_str("the whole app"),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// When the current backlog started, and when it was last summarised in the log.
    since: Option<Instant>,
    summarised: Option<Instant>,
    /// In order; the front one stays here while it is being sent, so it is counted as pending
    /// until Redis has it. Each with the reads it keeps from Redis meanwhile.
    items: VecDeque<(Intent, Blanks)>,
    /// How many of `items` are [`Blanks::All`].
    items_blanking_all: usize,
    /// What did not fit, by what it stands for: replayed wholesale on recovery.
    overflowed: HashMap<String, Intent>,
}

/// Which reads a pending invalidation keeps from Redis (they are misses until it has landed,
/// since Redis may still hold what it removes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blanks {
    /// Every read: Redis did not take it, and may hold anything it covers.
    All,
    /// Reads of keys on the shard of this slot: its master took the invalidation but its
    /// replicas did not confirm it, so only a failover of that shard could undo it.
    Shard(u16),
    /// None beyond its blocked mark (an unconfirmed mark raise: every value under the mark is
    /// a miss here already).
    Marked,
}

impl Blanks {
    /// What `intent`, failed with `cause`, keeps from Redis.
    pub(crate) fn of(intent: &Intent, cause: &CacheError) -> Self {
        if !matches!(cause, CacheError::Unconfirmed { .. }) {
            return Self::All;
        }
        match intent {
            Intent::Key(key) => Self::Shard(crate::cluster::slot::slot(key.as_str().as_bytes())),
            Intent::Id { entity, escaped_id } => {
                let key = entity.key_from_escaped(escaped_id, None);
                Self::Shard(crate::cluster::slot::slot(key.as_str().as_bytes()))
            }
            Intent::Entity(_) | Intent::Tag(_) | Intent::All => Self::Marked,
            Intent::Matching(..) => Self::All,
        }
    }
}

#[derive(Debug)]
pub(crate) struct ReplayQueue {
    state: Mutex<State>,
    /// How many invalidations are pending, readable without the lock on every read.
    pending: AtomicUsize,
    /// How many of them blank every read ([`Blanks::All`], and everything overflowed).
    blank_all: AtomicUsize,
    capacity: usize,
    wake: Notify,
    /// One sender at a time (the background task, or a shutdown flush): the front item is
    /// removed by whoever sent it.
    sending: tokio::sync::Mutex<()>,
}

impl ReplayQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            pending: AtomicUsize::new(0),
            blank_all: AtomicUsize::new(0),
            capacity,
            wake: Notify::new(),
            sending: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data; a panic elsewhere cannot leave it half-updated.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `intent`, which failed with `cause`. Logs one WARN when a backlog starts, the
    /// items themselves at DEBUG (thousands of writes during an outage are not thousands of
    /// WARN lines), and a summary now and then while it lasts.
    pub(crate) fn push(&self, intent: Intent, cause: &CacheError) {
        let mut state = self.lock();
        if state.since.is_none() {
            state.since = Some(Instant::now());
            state.summarised = Some(Instant::now());
            tracing::warn!(%cause, first = %intent, "invalidations are kept for replay until Redis answers again");
        } else {
            tracing::debug!(%intent, %cause, "invalidation kept for replay");
        }
        if state.items.len() < self.capacity {
            let blanks = Blanks::of(&intent, cause);
            state.items_blanking_all += usize::from(blanks == Blanks::All);
            state.items.push_back((intent, blanks));
        } else if state.overflowed.contains_key(WHOLE_APP) {
            // Covered already.
        } else if state.overflowed.len() >= MAX_OVERFLOWED {
            // Too many distinct entities and tags to keep apart: the whole app stands for them.
            tracing::warn!("replay queue full: the whole app is invalidated when Redis is back");
            state.overflowed.clear();
            state.overflowed.insert(WHOLE_APP.to_owned(), Intent::All);
        } else {
            let (id, wholesale) = intent.wholesale();
            if let std::collections::hash_map::Entry::Vacant(slot) = state.overflowed.entry(id) {
                tracing::warn!(
                    %wholesale,
                    "replay queue full: replayed wholesale when Redis is back"
                );
                slot.insert(wholesale);
            }
        }
        self.count(&state);
        drop(state);
        self.wake.notify_one();
    }

    fn front(&self) -> Option<Intent> {
        self.lock().items.front().map(|(intent, _)| intent.clone())
    }

    /// Removes the front item once it reached Redis (only the replay task pops, so it is
    /// still the one that was sent).
    fn sent_front(&self) {
        let mut state = self.lock();
        if let Some((_, Blanks::All)) = state.items.pop_front() {
            state.items_blanking_all -= 1;
        }
        self.count(&state);
    }

    /// Mirrors the counts for [`Self::any`] and [`Self::blanks_all`].
    fn count(&self, state: &State) {
        self.pending.store(
            state.items.len() + state.overflowed.len(),
            Ordering::Release,
        );
        self.blank_all.store(
            state.items_blanking_all + state.overflowed.len(),
            Ordering::Release,
        );
    }

    /// Whether anything is pending, without taking the lock (checked on every read).
    pub(crate) fn any(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    /// Whether a pending invalidation keeps every read from Redis.
    pub(crate) fn blanks_all(&self) -> bool {
        self.blank_all.load(Ordering::Acquire) > 0
    }

    /// The slots whose shards pending invalidations keep reads from.
    pub(crate) fn blanked_slots(&self) -> Vec<u16> {
        self.lock()
            .items
            .iter()
            .filter_map(|(_, blanks)| match blanks {
                Blanks::Shard(slot) => Some(*slot),
                _ => None,
            })
            .collect()
    }

    fn overflowed(&self) -> Vec<(String, Intent)> {
        self.lock()
            .overflowed
            .iter()
            .map(|(id, intent)| (id.clone(), intent.clone()))
            .collect()
    }

    fn sent_overflowed(&self, id: &str) {
        let mut state = self.lock();
        state.overflowed.remove(id);
        self.count(&state);
    }

    pub(crate) fn len(&self) -> usize {
        let state = self.lock();
        state.items.len() + state.overflowed.len()
    }

    /// Logs how the backlog stands every [`SUMMARY_EVERY`] while it lasts, and once when it is
    /// drained.
    fn summarise(&self) {
        let mut state = self.lock();
        let Some(since) = state.since else { return };
        let pending = state.items.len() + state.overflowed.len();
        if pending == 0 {
            state.since = None;
            state.summarised = None;
            tracing::info!(
                lasted_ms = since.elapsed().as_millis(),
                "invalidation backlog drained: every invalidation reached Redis"
            );
        } else if state
            .summarised
            .is_none_or(|at| at.elapsed() >= SUMMARY_EVERY)
        {
            state.summarised = Some(Instant::now());
            tracing::warn!(
                pending,
                oldest_s = since.elapsed().as_secs(),
                "invalidation backlog: still waiting for Redis"
            );
        }
    }
}

/// Retries the queue whenever something is added and every [`RETRY_EVERY`] while it is not
/// empty, until the cache is dropped.
pub(crate) async fn run(cache: Weak<Inner>) {
    loop {
        let Some(inner) = cache.upgrade() else { return };
        let queue_wake = async { inner.replay.wake.notified().await };
        let _ = tokio::time::timeout(RETRY_EVERY, queue_wake).await;
        if inner.replay.len() > 0 {
            // Probe every retry while something waits, not once per cooldown.
            inner.redis.expedite();
            Cache {
                inner: inner.clone(),
            }
            .replay()
            .await;
        }
        inner.replay.summarise();
    }
}

/// Whether replaying an intent went through, failed for now, or can never go through.
enum Replayed {
    Done,
    /// Redis is unreachable or slow: stop and retry later.
    Later,
    /// Redis refused the command itself (ACL, wrong type): retrying cannot help. (A refusal
    /// that lasts only while the server is in a state, such as `OOM`, is [`Self::Later`].)
    Refused,
}

impl Cache {
    /// Sends what is pending, in order, until Redis stops answering. An item Redis refuses
    /// outright is dropped (and logged) rather than blocking every later one.
    async fn replay(&self) {
        let queue = &self.inner.replay;
        let _sending = queue.sending.lock().await;
        let mut sent = 0usize;
        while let Some(intent) = queue.front() {
            match self.replay_intent(&intent).await {
                Replayed::Done => sent += 1,
                Replayed::Later => return,
                Replayed::Refused => {}
            }
            queue.sent_front();
        }
        for (id, intent) in queue.overflowed() {
            match self.replay_intent(&intent).await {
                Replayed::Done => sent += 1,
                Replayed::Later => return,
                Replayed::Refused => {}
            }
            queue.sent_overflowed(&id);
        }
        if sent > 0 {
            tracing::debug!(sent, "replayed invalidations");
        }
    }

    async fn replay_intent(&self, intent: &Intent) -> Replayed {
        match self.remove(intent).await {
            Ok(_) => {
                self.forget_locally(intent);
                Replayed::Done
            }
            Err(error) if !error.is_worth_retrying() => {
                tracing::error!(%intent, %error, "Redis refuses this invalidation: dropped from the replay queue");
                Replayed::Refused
            }
            Err(_) => Replayed::Later,
        }
    }

    /// How many invalidations wait for Redis (entities to invalidate wholesale count as one).
    /// An invalidation counts until Redis has it.
    pub fn pending_invalidations(&self) -> usize {
        self.inner.replay.len()
    }

    /// For a graceful shutdown: tries to send every pending invalidation for up to `timeout`,
    /// and answers how many are left (0: nothing is lost by exiting now). Invalidations still
    /// pending when a process exits are lost, and other instances may serve the values they
    /// were meant to remove until those expire.
    ///
    /// ```no_run
    /// # async fn demo(cache: cache_runtime::Cache) {
    /// use std::time::Duration;
    ///
    /// // On SIGTERM, after the server stopped taking requests:
    /// let left = cache.flush_pending(Duration::from_secs(5)).await;
    /// if left > 0 {
    ///     eprintln!("{left} invalidations could not reach Redis before exiting");
    /// }
    /// # }
    /// ```
    pub async fn flush_pending(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.inner.redis.expedite();
            // The deadline holds inside a long backlog too. Cancelling is safe: an intent
            // leaves the queue only once Redis took it, and replaying one twice is harmless.
            let _ = tokio::time::timeout_at(deadline, self.replay()).await;
            let left = self.inner.replay.len();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            // Redis did not take everything yet: wait a little, as the background task does.
            let pause = FLUSH_RETRY.min(deadline - tokio::time::Instant::now());
            tokio::time::sleep(pause).await;
        }
    }
}
