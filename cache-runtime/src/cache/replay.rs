//! Invalidations are not lost: what could not reach Redis is kept (bounded) and replayed once
//! Redis answers again; past the bound, the affected entities are invalidated wholesale.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Cache, Inner};
use crate::bus::Event;
use crate::entity::{CacheKey, Entity};

/// How many failed invalidations are kept one by one before whole entities are invalidated.
pub const DEFAULT_REPLAY_CAPACITY: usize = 10_000;
/// How often a non-empty queue is retried when nothing else wakes it.
const RETRY_EVERY: Duration = Duration::from_millis(250);

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
    /// The keys carrying a tag, by the tag's index.
    Tag(String),
    /// Only an event to publish again (its removal is done).
    Republish(Event),
}

impl Intent {
    pub(crate) fn entity(&self) -> Option<&Entity> {
        match self {
            Self::Key(key) => Some(key.entity()),
            Self::Id { entity, .. } | Self::Entity(entity) | Self::Matching(entity, _) => {
                Some(entity)
            }
            Self::Tag(_) | Self::Republish(_) => None,
        }
    }

    /// The event that tells other instances about it, when it is known before the removal (a
    /// tag's keys are only known once Redis answers).
    pub(crate) fn event(&self) -> Option<Event> {
        Some(match self {
            Self::Key(key) => Event::Key(key.as_str().to_owned()),
            Self::Id { entity, escaped_id } => Event::Id(
                entity
                    .key_from_escaped(escaped_id, None)
                    .as_str()
                    .to_owned(),
            ),
            // A glob is not matched locally: the whole entity goes, which is never wrong.
            Self::Entity(entity) | Self::Matching(entity, _) => {
                Event::Prefix(entity.pattern().trim_end_matches('*').to_owned())
            }
            Self::Tag(_) => return None,
            Self::Republish(event) => event.clone(),
        })
    }

    /// What stands in for it when the queue is full: its whole entity, or the tag itself.
    fn wholesale(&self) -> (String, Intent) {
        match (self, self.entity()) {
            (_, Some(entity)) => (
                format!("entity {}", entity.pattern()),
                Intent::Entity(entity.clone()),
            ),
            (intent, None) => (format!("{intent:?}"), intent.clone()),
        }
    }
}

/// Something that still has to reach Redis.
#[derive(Debug)]
pub(crate) enum Pending {
    /// The removal itself failed: remove, then publish.
    Invalidate(Intent),
    /// The removal went through, the event did not.
    Publish(Option<Entity>, Event),
}

impl Pending {
    fn wholesale(&self) -> (String, Intent) {
        match self {
            Self::Invalidate(intent) => intent.wholesale(),
            Self::Publish(Some(entity), _) => Intent::Entity(entity.clone()).wholesale(),
            // An event without an entity lists tagged keys: republish it as is.
            Self::Publish(None, event) => (format!("{event:?}"), Intent::Republish(event.clone())),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Pending>,
    /// What did not fit, by what it stands for: replayed wholesale on recovery.
    overflowed: HashMap<String, Intent>,
}

#[derive(Debug)]
pub(crate) struct ReplayQueue {
    state: Mutex<State>,
    capacity: usize,
    wake: Notify,
}

impl ReplayQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity,
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain data; a panic elsewhere cannot leave it half-updated.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn push(&self, pending: Pending) {
        let mut state = self.lock();
        if state.items.len() < self.capacity {
            tracing::warn!(?pending, "invalidation kept for replay when Redis is back");
            state.items.push_back(pending);
        } else {
            let (id, wholesale) = pending.wholesale();
            if let std::collections::hash_map::Entry::Vacant(slot) = state.overflowed.entry(id) {
                tracing::warn!(
                    ?wholesale,
                    "replay queue full: replayed wholesale when Redis is back"
                );
                slot.insert(wholesale);
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    fn pop(&self) -> Option<Pending> {
        self.lock().items.pop_front()
    }

    fn push_front(&self, pending: Pending) {
        self.lock().items.push_front(pending);
    }

    fn take_overflowed(&self) -> Vec<(String, Intent)> {
        self.lock().overflowed.drain().collect()
    }

    fn restore_overflowed(&self, intents: Vec<(String, Intent)>) {
        self.lock().overflowed.extend(intents);
    }

    pub(crate) fn len(&self) -> usize {
        let state = self.lock();
        state.items.len() + state.overflowed.len()
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
            Cache { inner }.replay().await;
        }
    }
}

impl Cache {
    /// Sends what is pending, in order, stopping at the first failure.
    async fn replay(&self) {
        let queue = &self.inner.replay;
        let mut sent = 0usize;
        while let Some(pending) = queue.pop() {
            let done = match &pending {
                Pending::Invalidate(intent) => self.replay_intent(intent).await,
                Pending::Publish(entity, event) => {
                    self.try_publish(entity.as_ref(), event).await.is_ok()
                }
            };
            if !done {
                queue.push_front(pending);
                return;
            }
            sent += 1;
        }
        let mut failed = Vec::new();
        for (id, intent) in queue.take_overflowed() {
            if self.replay_intent(&intent).await {
                sent += 1;
            } else {
                failed.push((id, intent));
            }
        }
        queue.restore_overflowed(failed);
        if sent > 0 {
            tracing::info!(sent, "replayed invalidations after Redis recovered");
        }
    }

    /// Removes and announces; `false` if Redis still does not answer. (A failed announcement
    /// queues itself again.)
    async fn replay_intent(&self, intent: &Intent) -> bool {
        if let Intent::Republish(event) = intent {
            return self.try_publish(None, event).await.is_ok();
        }
        match self.remove(intent).await {
            Ok(removed) => {
                self.announce(intent, removed.keys).await;
                true
            }
            Err(_) => false,
        }
    }

    /// How many invalidations wait for Redis (entities to invalidate wholesale count as one).
    pub fn pending_invalidations(&self) -> usize {
        self.inner.replay.len()
    }
}
