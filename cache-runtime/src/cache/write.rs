//! Explicit writes (`set`, `set_ordered`, `#[cache_put]`): stamped when the value's computation
//! starts, ordered by revision when asked, and replaced by an invalidation when they fail.
//!
//! A write-through stores what its function computed. An entity, tag or app invalidation made
//! while it computed covers that value only if the value's stamp was taken before: so the
//! stamp is taken first ([`Cache::begin_write`]) and the value stored after
//! ([`Cache::finish_write`]). Two writes of one key that race can still land in the wrong
//! order; a write given a revision (the row's version, say) is refused when the key has
//! already been written with a higher one, so the newest value stays.

use std::time::Duration;

use serde::Serialize;

use super::Cache;
use super::replay::Intent;
use super::storage::{Stored, Write};
use super::validity::Stamp;
use crate::entity::CacheKey;
use crate::error::CacheError;
use crate::ttl::Ttl;

/// A write whose stamp was taken before its value was computed.
#[derive(Debug)]
pub(crate) struct WriteStart {
    /// How long the value stays fresh (jittered).
    ttl: Duration,
    /// How long it stays in Redis: the freshness plus any stale grace.
    physical_ttl: Duration,
    /// The epoch and id token the value will be valid under; the error if they could not be
    /// read (Redis trouble), in which case the write becomes an invalidation.
    stamped: Result<(u64, Option<u64>), CacheError>,
}

/// Whether a finished write stored its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    Stored,
    /// An ordered write older than what the key was already written with.
    Superseded,
}

impl Cache {
    /// Takes the stamp of a value about to be computed for `key`, fresh for `ttl` and kept
    /// `grace` longer.
    pub(crate) async fn begin_write(
        &self,
        key: &CacheKey,
        tags: &[String],
        ttl: Ttl,
        grace: Duration,
    ) -> WriteStart {
        let ttl = self.jittered(ttl);
        let physical_ttl = ttl + grace;
        let stamped = self
            .stamp(key, tags, None, physical_ttl)
            .await
            .map(|stamp| (stamp.epoch, stamp.id_token));
        WriteStart {
            ttl,
            physical_ttl,
            stamped,
        }
    }

    /// Stores `value` under `key` as begun by `start`, voiding
    /// any loader's lease (its value would be older than this one) and telling the other
    /// instances. With a `revision`, the write is refused if the key was written with a higher
    /// one. If the write fails, the key is invalidated instead (and that is replayed
    /// if Redis is down), so an older value cannot outlive a write that was meant to replace
    /// it.
    pub(crate) async fn finish_write<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: Stored<'_, T>,
        start: WriteStart,
        tags: &[String],
        revision: Option<u64>,
    ) -> Result<Written, CacheError> {
        let intent = Intent::Key(key.clone());
        self.forget_locally(&intent);
        let WriteStart {
            ttl,
            physical_ttl,
            stamped,
        } = start;
        let written = async {
            let (epoch, id_token) = stamped?;
            let stamp = Stamp {
                epoch,
                id_token,
                tags,
                floor: 0,
                revision,
            };
            let bytes = self.encode(value, ttl, Duration::ZERO, &stamp)?;
            let write = revision.map_or(Write::Overwrite, Write::Ordered);
            self.store_encoded(key, &bytes, physical_ttl, write).await
        }
        .await;
        match written {
            Ok(stored) => {
                self.forget_locally(&intent);
                Ok(if stored {
                    Written::Stored
                } else {
                    tracing::debug!(
                        key = key.as_str(),
                        ?revision,
                        "write superseded by a newer revision"
                    );
                    Written::Superseded
                })
            }
            Err(error) => {
                tracing::debug!(key = key.as_str(), %error, "write failed: invalidating the key instead");
                let _ = self.invalidate(intent).await;
                Err(error)
            }
        }
    }

    /// A write of a value computed before the call: stamped now.
    pub(crate) async fn store<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: Stored<'_, T>,
        ttl: Ttl,
        revision: Option<u64>,
    ) -> Result<Written, CacheError> {
        if self.is_disabled() {
            return Ok(Written::Stored);
        }
        let start = self.begin_write(key, &[], ttl, Duration::ZERO).await;
        self.finish_write(key, value, start, &[], revision).await
    }
}
