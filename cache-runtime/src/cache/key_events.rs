//! Which instances hear of single keys written or deleted.
//!
//! A write or a key's deletion must reach every instance that may hold the old value in its
//! local tier, and no other: on the app's channel, every write would be delivered to the whole
//! fleet. So each entity has a channel of its own (`<app>:v{N}:{entity}:%keys`), and an
//! instance subscribes to it when it first uses its local tier for that entity, before it
//! keeps or serves anything of the entity there. Until the subscription is confirmed the
//! entity is read from Redis. (Loads in flight in other instances do not need the event: a
//! leader hands its value to its waiting callers only once it is stored under its lease, which
//! the write or deletion voided.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Cache, Inner};
use crate::entity::Entity;

/// The entity's channel is not wanted.
const UNHEARD: u8 = 0;
/// Wanted: the subscriber subscribes at its next turn.
const REQUESTED: u8 = 1;
/// Subscribed: the local tier may keep the entity's values.
const HEARD: u8 = 2;

/// The entities whose key events this instance wants, and a wake-up for the subscriber.
#[derive(Debug, Default)]
pub(crate) struct Hearing {
    wanted: std::sync::Mutex<Vec<Entity>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Hearing {
    fn wanted(&self) -> std::sync::MutexGuard<'_, Vec<Entity>> {
        self.wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What wakes the subscriber when an entity is wanted.
    pub(crate) fn changed(&self) -> Arc<tokio::sync::Notify> {
        self.changed.clone()
    }
}

/// Whether this instance hears `entity`'s key events (its local tier may keep its values).
pub(crate) fn hears(entity: &Entity) -> bool {
    entity.hearing().load(Ordering::Acquire) == HEARD
}

impl Inner {
    /// Asks the subscriber for `entity`'s channel (once).
    fn request_hearing(&self, entity: &Entity) {
        let asked = entity.hearing().compare_exchange(
            UNHEARD,
            REQUESTED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if asked.is_ok() {
            self.hearing.wanted().push(entity.clone());
            self.hearing.changed.notify_one();
        }
    }

    /// The channels of the wanted entities; with `all`, those already heard too (a new
    /// subscription subscribes to every one).
    pub(crate) fn wanted_key_channels(&self, all: bool) -> Vec<String> {
        self.hearing
            .wanted()
            .iter()
            .filter(|e| all || e.hearing().load(Ordering::Acquire) == REQUESTED)
            .map(|e| e.keys_channel().to_owned())
            .collect()
    }

    /// The subscription to `channels` is confirmed.
    pub(crate) fn key_channels_heard(&self, channels: &[String]) {
        for entity in self.hearing.wanted().iter() {
            if channels.iter().any(|c| c == entity.keys_channel()) {
                entity.hearing().store(HEARD, Ordering::Release);
            }
        }
    }

    /// The subscription ended: nothing is heard until it is back.
    pub(crate) fn key_channels_lost(&self) {
        for entity in self.hearing.wanted().iter() {
            entity.hearing().store(REQUESTED, Ordering::Release);
        }
    }
}

impl Cache {
    /// Before the first use of the local tier for `entity`: asks for its channel and, while
    /// the bus is up, waits for the subscription (one round trip, at most the operation
    /// timeout); the read goes on from Redis if it is not confirmed by then.
    pub(crate) async fn start_hearing(&self, entity: &Entity) {
        self.inner.request_hearing(entity);
        if !self.inner.marks.bus_live() {
            return;
        }
        let deadline = Instant::now() + self.inner.config.operation_timeout;
        while !hears(entity) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
