//! Invalidation: an id with all its variants, or a whole entity.

use super::Cache;
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

/// Keys fetched per `SCAN` step of an entity-wide invalidation.
const SCAN_BATCH: usize = 1000;

impl Cache {
    /// Deletes `id` of `entity` together with all its variants; returns how many keys went.
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
        let key = entity.key_from_escaped(escaped_id, None);
        let index = entity.prefix().variants_index(escaped_id);
        let removed: u64 = self
            .redis(
                entity,
                redis::cmd("EVAL")
                    .arg(INVALIDATE_ID)
                    .arg(2)
                    .arg(key.as_str())
                    .arg(&index),
            )
            .await?;
        tracing::debug!(key = key.as_str(), removed, "cache invalidate id");
        self.publish(entity, Event::Id(key.as_str().to_owned()))
            .await;
        Ok(removed)
    }

    /// Deletes every key of `entity` (at its version) with `SCAN` + `UNLINK` in batches, never
    /// `KEYS`; returns how many keys went.
    pub async fn invalidate_entity(&self, entity: &Entity) -> Result<u64, CacheError> {
        let pattern = entity.pattern();
        let mut cursor: u64 = 0;
        let mut removed: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .redis(
                    entity,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_BATCH),
                )
                .await?;
            if !keys.is_empty() {
                let unlinked: u64 = self.redis(entity, redis::cmd("UNLINK").arg(&keys)).await?;
                removed += unlinked;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        tracing::debug!(entity = entity.name(), removed, "cache invalidate entity");
        let prefix = entity.pattern().trim_end_matches('*').to_owned();
        self.publish(entity, Event::Prefix(prefix)).await;
        Ok(removed)
    }
}
