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
}

impl Intent {
    pub(crate) fn entity(&self) -> &Entity {
        match self {
            Self::Key(key) => key.entity(),
            Self::Id { entity, .. } | Self::Entity(entity) | Self::Matching(entity, _) => entity,
        }
    }

    /// The event that tells other instances about it.
    pub(crate) fn event(&self) -> Event {
        match self {
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
        }
    }
}

/// Something that still has to reach Redis.
#[derive(Debug)]
pub(crate) enum Pending {
    /// The delete itself failed: delete, then publish.
    Invalidate(Intent),
    /// The delete went through, the event did not.
    Publish(Entity, Event),
}

impl Pending {
    fn entity(&self) -> &Entity {
        match self {
            Self::Invalidate(intent) => intent.entity(),
            Self::Publish(entity, _) => entity,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Pending>,
    /// Entities whose pending items did not fit: invalidated wholesale on recovery.
    overflowed: HashMap<(String, u32), Entity>,
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
            let entity = pending.entity().clone();
            let id = (entity.name().to_owned(), entity.metrics().version);
            if let std::collections::hash_map::Entry::Vacant(slot) = state.overflowed.entry(id) {
                tracing::warn!(
                    entity = entity.name(),
                    "replay queue full: the whole entity will be invalidated when Redis is back"
                );
                slot.insert(entity);
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

    fn take_overflowed(&self) -> Vec<Entity> {
        self.lock().overflowed.drain().map(|(_, e)| e).collect()
    }

    fn restore_overflowed(&self, entities: Vec<Entity>) {
        let mut state = self.lock();
        for entity in entities {
            let id = (entity.name().to_owned(), entity.metrics().version);
            state.overflowed.insert(id, entity);
        }
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
            let outcome = match &pending {
                Pending::Invalidate(intent) => match self.remove(intent).await {
                    Ok(_) => self
                        .try_publish(intent.entity(), &intent.event())
                        .await
                        .map_err(|_| Pending::Publish(intent.entity().clone(), intent.event())),
                    Err(_) => Err(pending),
                },
                Pending::Publish(entity, event) => match self.try_publish(entity, event).await {
                    Ok(()) => Ok(()),
                    Err(_) => Err(pending),
                },
            };
            match outcome {
                Ok(()) => sent += 1,
                Err(still_pending) => {
                    queue.push_front(still_pending);
                    return;
                }
            }
        }
        let overflowed = queue.take_overflowed();
        let mut failed = Vec::new();
        for entity in overflowed {
            let intent = Intent::Entity(entity.clone());
            if self.remove(&intent).await.is_err()
                || self.try_publish(&entity, &intent.event()).await.is_err()
            {
                failed.push(entity);
            } else {
                sent += 1;
            }
        }
        queue.restore_overflowed(failed);
        if sent > 0 {
            tracing::info!(sent, "replayed invalidations after Redis recovered");
        }
    }

    /// How many invalidations wait for Redis (entities to invalidate wholesale count as one).
    pub fn pending_invalidations(&self) -> usize {
        self.inner.replay.len()
    }
}
