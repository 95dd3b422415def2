//! Whether a stored value may still be served, and what a new value records so that it can be
//! told later: the Redis side of [`marks`](crate::marks).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::Cache;
use crate::bus::Event;
use crate::entity::{CacheKey, Entity};
use crate::envelope::{Header, Tags};
use crate::error::CacheError;
use crate::flight::Outcome;
use crate::key::{app_mark_key, epoch_key, tag_mark_key};
use crate::marks::{BUMP_EPOCH, MARK_TTL, MarkCell, RAISE_MARK};

/// What a value is valid under: written into its envelope.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp<'a> {
    /// The epoch known when the load started (or the write was made).
    pub(crate) epoch: u64,
    /// For a variant key, its id's variants token.
    pub(crate) id_token: Option<u64>,
    pub(crate) tags: &'a [String],
    /// The highest of the marks the value depends on: a load stamped below it is invalid.
    pub(crate) floor: u64,
    /// An ordered write's revision, kept in the value's envelope.
    pub(crate) revision: Option<u64>,
}

/// The marks one batch read (`get_many`) had to fetch from Redis, so that each is read once
/// for the batch rather than once per key (while the bus is down, no mark is trusted).
#[derive(Debug, Default)]
pub(crate) struct BatchMarks(Mutex<HashMap<String, u64>>);

impl BatchMarks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // Plain numbers: a panic elsewhere cannot leave them half-written.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, mark_key: &str) -> Option<u64> {
        self.lock().get(mark_key).copied()
    }

    fn insert(&self, mark_key: String, mark: u64) {
        self.lock().insert(mark_key, mark);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl<'a> Stamp<'a> {
    /// The stamp of a value that cannot be stored (Redis was unavailable), for this process's
    /// waiting callers only: `epoch`, known before the load started, is what the gate they
    /// pass compares with the marks.
    pub(crate) fn unstored(epoch: u64, tags: &'a [String]) -> Self {
        Stamp {
            epoch,
            id_token: None,
            tags,
            floor: 0,
            revision: None,
        }
    }
}

impl Cache {
    /// Whether a value read from Redis is still valid: not older than its entity's and its
    /// tags' marks, and, for a variant, written under its id's current token.
    pub(crate) async fn still_valid(
        &self,
        key: &CacheKey,
        header: &Header,
        tags: Tags<'_>,
        id_token: Option<u64>,
    ) -> Result<bool, CacheError> {
        self.still_valid_in(None, key, header, tags, id_token).await
    }

    /// [`Self::still_valid`] for one key of a batch: a mark read from Redis for an earlier key
    /// of `batch` is not read again.
    pub(crate) async fn still_valid_in(
        &self,
        batch: Option<&BatchMarks>,
        key: &CacheKey,
        header: &Header,
        tags: Tags<'_>,
        id_token: Option<u64>,
    ) -> Result<bool, CacheError> {
        if key.has_variant() && (id_token.is_none() || header.id_token != id_token) {
            return Ok(false);
        }
        let entity = key.entity();
        let prefix = &self.inner.config.app_prefix;
        let entity_mark = self
            .mark(batch, entity, entity.mark(), || {
                entity.mark_key().to_owned()
            })
            .await?;
        let app_mark = self
            .mark(batch, entity, &self.inner.app_mark, || app_mark_key(prefix))
            .await?;
        if header.epoch < entity_mark || header.epoch < app_mark {
            return Ok(false);
        }
        for tag in tags.iter() {
            let cell = self.inner.marks.tag_cell(tag);
            let mark = self
                .mark(batch, entity, &cell, || tag_mark_key(prefix, tag))
                .await?;
            if header.epoch < mark {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// [`Self::still_valid`] without a round trip: `None` when a mark it needs is not held in
    /// process (then [`Self::still_valid`] reads it). The usual case on the hit path, which so
    /// builds no future for the check.
    pub(crate) fn still_valid_now(
        &self,
        key: &CacheKey,
        header: &Header,
        tags: Tags<'_>,
        id_token: Option<u64>,
    ) -> Option<bool> {
        if key.has_variant() && (id_token.is_none() || header.id_token != id_token) {
            return Some(false);
        }
        let marks = &self.inner.marks;
        let session = marks.session();
        let below = |cell: &MarkCell| cell.trusted(session).map(|mark| header.epoch < mark);
        if below(key.entity().mark())? || below(&self.inner.app_mark)? {
            return Some(false);
        }
        for tag in tags.iter() {
            if below(&marks.tag_cell(tag))? {
                return Some(false);
            }
        }
        Some(true)
    }

    /// [`Self::still_valid`] for the local tier: only marks this instance trusts count, any
    /// other is a miss. (Id tokens are not checked here: id invalidations reach the local tier
    /// as events.)
    pub(crate) fn still_valid_locally(
        &self,
        entity: &Entity,
        header: &Header,
        tags: Tags<'_>,
    ) -> bool {
        let marks = &self.inner.marks;
        let session = marks.session();
        let below = |cell: &MarkCell| cell.trusted(session).is_none_or(|mark| header.epoch < mark);
        if below(entity.mark()) || below(&self.inner.app_mark) {
            return false;
        }
        tags.iter().all(|tag| !below(&marks.tag_cell(tag)))
    }

    /// The gate for a value handed over by this process's flight leader: the same check as a
    /// Redis hit, against the marks in force now (the follower's read began before). `false`:
    /// an invalidation overtook the load, and the follower must not take its value.
    ///
    /// If the marks cannot be read (Redis is down), the marks held in process decide: an
    /// invalidation that could not reach Redis blocks its mark here until it is replayed.
    pub(crate) async fn handed_over_valid(&self, key: &CacheKey, outcome: &Outcome) -> bool {
        let Outcome::Value(bytes) = outcome else {
            return true;
        };
        let Ok(envelope) = Header::unwrap(bytes) else {
            return true;
        };
        let header = envelope.header;
        // The leader's own token: an id invalidation reaches flights as a detach instead.
        let own_token = header.id_token;
        match self.still_valid_now(key, &header, envelope.tags, own_token) {
            Some(valid) => valid,
            None => self
                .still_valid(key, &header, envelope.tags, own_token)
                .await
                .unwrap_or(true),
        }
    }

    /// The stamp of a value whose load starts now: the marks it depends on are known first, so
    /// the epoch recorded is at least each of them.
    pub(crate) async fn stamp<'a>(
        &self,
        key: &CacheKey,
        tags: &'a [String],
        id_token: Option<u64>,
        ttl: Duration,
    ) -> Result<Stamp<'a>, CacheError> {
        if !self.inner.fence.verified() {
            // A value stamped before the fence would be invalid at once.
            self.check_fence().await?;
        }
        let entity = key.entity();
        let mut floor = self
            .entity_mark(entity)
            .await?
            .max(self.app_mark(entity).await?);
        for tag in tags {
            floor = floor.max(self.tag_mark(entity, tag).await?);
        }
        let id_token = match (key.variants_token_key(), id_token) {
            (Some(token_key), None) => Some(self.create_id_token(entity, &token_key, ttl).await?),
            (Some(_), token) => token,
            (None, _) => None,
        };
        Ok(Stamp {
            epoch: self.inner.marks.known(),
            id_token,
            tags,
            floor,
            revision: None,
        })
    }

    /// Gives an id's variants a token if they have none; answers the token in force.
    async fn create_id_token(
        &self,
        entity: &Entity,
        token_key: &str,
        ttl: Duration,
    ) -> Result<u64, CacheError> {
        let token: u64 = rand::random();
        let existing: Option<u64> = self
            .redis(
                entity,
                redis::cmd("SET")
                    .arg(token_key)
                    .arg(token)
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(millis(ttl)),
            )
            .await?;
        Ok(existing.unwrap_or(token))
    }

    async fn entity_mark(&self, entity: &Entity) -> Result<u64, CacheError> {
        self.mark(None, entity, entity.mark(), || entity.mark_key().to_owned())
            .await
    }

    async fn app_mark(&self, entity: &Entity) -> Result<u64, CacheError> {
        self.mark(None, entity, &self.inner.app_mark, || {
            app_mark_key(&self.inner.config.app_prefix)
        })
        .await
    }

    async fn tag_mark(&self, entity: &Entity, tag: &str) -> Result<u64, CacheError> {
        let cell = self.inner.marks.tag_cell(tag);
        self.mark(None, entity, &cell, || {
            tag_mark_key(&self.inner.config.app_prefix, tag)
        })
        .await
    }

    /// A mark as this instance trusts it, or else as Redis has it now (once per `batch`). A
    /// mark Redis lost (evicted, expired, failed over) is recreated as "invalidated now".
    async fn mark(
        &self,
        batch: Option<&BatchMarks>,
        entity: &Entity,
        cell: &MarkCell,
        mark_key: impl FnOnce() -> String,
    ) -> Result<u64, CacheError> {
        let marks = &self.inner.marks;
        let session = marks.session();
        if let Some(mark) = cell.trusted(session) {
            return Ok(mark);
        }
        let mark_key = mark_key();
        if let Some(mark) = batch.and_then(|batch| batch.get(&mark_key)) {
            return Ok(mark);
        }
        // On the heap: a round trip here is rare, and its future would otherwise grow every
        // read's.
        let mark = Box::pin(self.read_mark(entity, cell, mark_key.clone(), session)).await?;
        if let Some(batch) = batch {
            batch.insert(mark_key, mark);
        }
        Ok(mark)
    }

    async fn read_mark(
        &self,
        entity: &Entity,
        cell: &MarkCell,
        mark_key: String,
        session: u64,
    ) -> Result<u64, CacheError> {
        let marks = &self.inner.marks;
        let mut read = redis::pipe();
        read.cmd("GET")
            .arg(&mark_key)
            .cmd("PEXPIRE")
            .arg(&mark_key)
            .arg(millis(MARK_TTL))
            .arg("GT")
            .ignore();
        let (value,): (Option<u64>,) = self.redis(entity, &read).await?;
        let value = match value {
            Some(value) => value,
            None => self.recreate_mark(entity, &mark_key).await?,
        };
        marks.saw(value);
        Ok(cell.learn(value, session, marks.session()))
    }

    async fn recreate_mark(&self, entity: &Entity, mark_key: &str) -> Result<u64, CacheError> {
        let epoch = self.next_epoch(Some(entity)).await?;
        let existing: Option<u64> = self
            .redis(
                entity,
                redis::cmd("SET")
                    .arg(mark_key)
                    .arg(epoch)
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(millis(MARK_TTL)),
            )
            .await?;
        if let Some(existing) = existing {
            return Ok(existing);
        }
        // Running instances trust the mark they read before it was lost and stamp with the
        // epoch they know: told nothing, they would write values that every instance reading
        // the new mark misses. The event raises both.
        let event = match mark_key.split_once(":%tag:") {
            Some((_, tag)) => Event::TagMark(tag.to_owned(), epoch),
            None => Event::EntityMark(mark_key.to_owned(), epoch),
        };
        if let Err(error) = self.try_publish(Some(entity), &event).await {
            tracing::debug!(mark_key, %error, "could not announce a recreated mark");
        }
        Ok(epoch)
    }

    async fn next_epoch(&self, entity: Option<&Entity>) -> Result<u64, CacheError> {
        let mut bump = self.inner.scripts.cmd(&BUMP_EPOCH);
        // Above every epoch this instance knows: a failover that lost the last bump cannot
        // hand out a number already used.
        bump.arg(1)
            .arg(epoch_key(&self.inner.config.app_prefix))
            .arg(self.inner.marks.known());
        let epoch: u64 = match entity {
            Some(entity) => self.redis(entity, &bump).await?,
            None => self.call((&bump).into()).await?,
        };
        Ok(epoch)
    }

    /// Invalidates everything under a mark: raises it to a new epoch and tells every instance
    /// (confirmed by the shard's replicas on a cluster). Two round trips, whatever the number
    /// of keys it covers.
    pub(crate) async fn raise_mark(
        &self,
        entity: Option<&Entity>,
        cell: &MarkCell,
        mark_key: &str,
        event: impl FnOnce(u64) -> Event,
    ) -> Result<(), CacheError> {
        let marks = &self.inner.marks;
        let seq = marks.next_seq();
        let epoch = self.next_epoch(entity).await?;
        let mut raise = redis::pipe();
        self.inner
            .scripts
            .add(&mut raise, &RAISE_MARK)
            .arg(1)
            .arg(mark_key)
            .arg(epoch)
            .arg(millis(MARK_TTL))
            .ignore()
            .cmd("PUBLISH")
            .arg(&self.inner.channel)
            .arg(event(epoch).encode(self.inner.origin))
            .ignore();
        let () = self.call_confirmed(entity, &raise).await?;
        cell.raise(epoch);
        marks.saw(epoch);
        cell.unblock(seq);
        Ok(())
    }
}
