//! Invalidation: an id with all its variants, or a whole entity.

use super::Cache;
use super::replay::{Intent, Pending};
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

/// Keys fetched per `SCAN` step of an entity-wide invalidation.
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

    /// Deletes every key of `entity` (at its version) with `SCAN` + `UNLINK` in batches, never
    /// `KEYS`; returns how many keys went. Replayed like [`Self::invalidate_id`] on failure.
    pub async fn invalidate_entity(&self, entity: &Entity) -> Result<u64, CacheError> {
        self.invalidate(Intent::Entity(entity.clone())).await
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
        let event = intent.event();
        self.inner.apply_locally(&event);
        match self.remove(&intent).await {
            Ok(removed) => {
                self.publish_remote(intent.entity(), event).await;
                Ok(removed)
            }
            Err(error) => {
                self.inner.replay.push(Pending::Invalidate(intent));
                Err(error)
            }
        }
    }

    /// The Redis part of an invalidation, leases included.
    pub(crate) async fn remove(&self, intent: &Intent) -> Result<u64, CacheError> {
        match intent {
            Intent::Key(key) => {
                // The lease goes too: a loader holding it must not store what it read before.
                self.redis(
                    key.entity(),
                    redis::cmd("UNLINK").arg(key.as_str()).arg(key.lease_key()),
                )
                .await
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
                .await
            }
            Intent::Entity(entity) => self.remove_matching(entity, &entity.pattern()).await,
            Intent::Matching(entity, glob) => {
                let pattern = format!("{}{glob}", entity.pattern().trim_end_matches('*'));
                self.remove_matching(entity, &pattern).await
            }
        }
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
