//! Invalidation: an id with all its variants, or a whole entity.

use super::Cache;
use super::replay::{Intent, Pending};
use crate::bus::Event;
use crate::entity::Entity;
use crate::error::CacheError;
use crate::key::KeyPart;

/// Deletes an id's key, every variant listed in its index, the index, and the leases of all of
/// them, atomically: a variant written concurrently is either deleted here or written after,
/// and a loader that read before this cannot store afterwards (its lease is gone).
const INVALIDATE_ID: &str = r"
local members = redis.call('SMEMBERS', KEYS[2])
local removed = redis.call('UNLINK', KEYS[1])
redis.call('UNLINK', KEYS[2], KEYS[1] .. ':%lease')
for i = 1, #members do
  removed = removed + redis.call('UNLINK', members[i])
  redis.call('UNLINK', members[i] .. ':%lease')
end
return removed
";

/// Deletes every key of an index (an entity's or a tag's), their leases, and the index;
/// answers how many keys went and which.
const INVALIDATE_INDEXED: &str = r"
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('UNLINK', KEYS[1])
local removed = 0
for i = 1, #members do
  removed = removed + redis.call('UNLINK', members[i])
  redis.call('UNLINK', members[i] .. ':%lease')
end
return {removed, members}
";

/// Keys per invalidation event listing tagged keys.
const KEYS_PER_EVENT: usize = 200;

/// What a removal took out of Redis.
pub(crate) struct Removed {
    pub(crate) count: u64,
    /// The keys, where other instances cannot work them out themselves (tags).
    pub(crate) keys: Vec<String>,
}

/// Keys fetched per `SCAN` step of a pattern invalidation.
const SCAN_BATCH: usize = 1000;

impl Cache {
    /// Deletes `id` of `entity` together with all its variants; returns how many keys went.
    ///
    /// Like every invalidation, it drops this instance's local copies at once and tells the
    /// other instances. If Redis cannot be reached the error is returned and the invalidation
    /// is also kept and replayed when Redis answers again.
    pub async fn invalidate_id(
        &self,
        entity: &Entity,
        id: &(impl KeyPart + ?Sized),
    ) -> Result<u64, CacheError> {
        let mut escaped = String::new();
        id.append_to(&mut escaped);
        self.invalidate_escaped_id(entity, &escaped).await
    }

    pub(crate) async fn invalidate_escaped_id(
        &self,
        entity: &Entity,
        escaped_id: &str,
    ) -> Result<u64, CacheError> {
        self.invalidate(Intent::Id {
            entity: entity.clone(),
            escaped_id: escaped_id.to_owned(),
        })
        .await
    }

    /// Deletes every key of `entity` (at its version), found through the entity's key index
    /// (no keyspace scan: the cost follows the entity's size, not Redis'); returns how many
    /// keys went. Replayed like [`Self::invalidate_id`] on failure.
    pub async fn invalidate_entity(&self, entity: &Entity) -> Result<u64, CacheError> {
        self.invalidate(Intent::Entity(entity.clone())).await
    }

    /// Deletes every key written with `tag` (`#[cached(tags = ["category:{id}"])]`), across
    /// entities, through the tag's index; returns how many keys went. `tag` is the rendered
    /// tag: literal text as in the template, interpolated values escaped (see
    /// [`escape_into`](crate::escape_into)). Replayed like [`Self::invalidate_id`] on failure.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        let config = &self.inner.config;
        let index = format!("{}:v{}:%tag:{tag}", config.app_prefix, config.version);
        self.invalidate(Intent::Tag(index)).await
    }

    /// For operators: deletes the keys of `entity` whose part after the entity prefix matches
    /// `glob` (Redis glob syntax, over the escaped id and variant, e.g. `"42:*"` or `"*:p1"`),
    /// with `SCAN` + `UNLINK` in batches; returns how many keys went. The glob is appended to
    /// the entity's fixed prefix, so it cannot match another entity's keys. Other instances
    /// drop their local copies of the whole entity.
    pub async fn invalidate_matching(
        &self,
        entity: &Entity,
        glob: &str,
    ) -> Result<u64, CacheError> {
        if glob.is_empty() {
            return Ok(0);
        }
        self.invalidate(Intent::Matching(entity.clone(), glob.to_owned()))
            .await
    }

    /// Drops local copies at once, then removes from Redis and tells the other instances; what
    /// fails is queued for replay.
    pub(crate) async fn invalidate(&self, intent: Intent) -> Result<u64, CacheError> {
        if let Some(event) = intent.event() {
            self.inner.apply_locally(&event);
        }
        match self.remove(&intent).await {
            Ok(removed) => {
                self.announce(&intent, removed.keys).await;
                Ok(removed.count)
            }
            Err(error) => {
                if intent.event().is_none() {
                    // Which keys a tag covers is only known to Redis: drop every local copy.
                    self.inner.clear_local();
                }
                self.inner.replay.push(Pending::Invalidate(intent));
                Err(error)
            }
        }
    }

    /// Tells the other instances (and, for tags, this one's local tier) what went.
    pub(crate) async fn announce(&self, intent: &Intent, keys: Vec<String>) {
        match intent.event() {
            Some(event) => self.publish_remote(intent.entity(), event).await,
            None => {
                for chunk in keys.chunks(KEYS_PER_EVENT) {
                    let event = Event::Keys(chunk.to_vec());
                    self.inner.apply_locally(&event);
                    self.publish_remote(None, event).await;
                }
            }
        }
    }

    /// The Redis part of an invalidation, leases included.
    pub(crate) async fn remove(&self, intent: &Intent) -> Result<Removed, CacheError> {
        let count = match intent {
            Intent::Key(key) => {
                // The lease goes too: a loader holding it must not store what it read before.
                self.redis(
                    key.entity(),
                    redis::cmd("UNLINK").arg(key.as_str()).arg(key.lease_key()),
                )
                .await?
            }
            Intent::Id { entity, escaped_id } => {
                let key = entity.key_from_escaped(escaped_id, None);
                let index = entity.prefix().variants_index(escaped_id);
                self.redis(
                    entity,
                    redis::cmd("EVAL")
                        .arg(INVALIDATE_ID)
                        .arg(2)
                        .arg(key.as_str())
                        .arg(&index),
                )
                .await?
            }
            Intent::Entity(entity) => {
                let index = entity.prefix().keys_index();
                let mut eval = redis::cmd("EVAL");
                eval.arg(INVALIDATE_INDEXED).arg(1).arg(&index);
                let (count, _keys): (u64, Vec<String>) = self.redis(entity, &eval).await?;
                count
            }
            Intent::Matching(entity, glob) => {
                let pattern = format!("{}{glob}", entity.pattern().trim_end_matches('*'));
                self.remove_matching(entity, &pattern).await?
            }
            Intent::Tag(index) => {
                let mut eval = redis::cmd("EVAL");
                eval.arg(INVALIDATE_INDEXED).arg(1).arg(index);
                let (count, keys): (u64, Vec<String>) = self.call((&eval).into()).await?;
                return Ok(Removed { count, keys });
            }
            Intent::Republish(_) => 0,
        };
        Ok(Removed {
            count,
            keys: Vec::new(),
        })
    }

    /// `SCAN` + `UNLINK` of every key of `entity` matching `pattern`, in batches.
    async fn remove_matching(&self, entity: &Entity, pattern: &str) -> Result<u64, CacheError> {
        let mut cursor: u64 = 0;
        let mut removed: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .redis(
                    entity,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_BATCH),
                )
                .await?;
            if !keys.is_empty() {
                let unlinked: u64 = self.redis(entity, redis::cmd("UNLINK").arg(&keys)).await?;
                removed += unlinked;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}
