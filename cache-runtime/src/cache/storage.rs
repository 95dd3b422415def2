//! What goes over the wire: envelope + codec + compression, reads and writes of one key.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use super::index;
use crate::bus::Event;
use crate::codec::CodecKind;
use crate::compress;
use crate::entity::CacheKey;
use crate::envelope::Header;
use crate::error::CacheError;
use crate::freshness::now_ms;
use crate::metrics::bump;
use crate::ttl::Ttl;

/// What a read found.
pub(crate) enum Lookup<T> {
    Hit(T, Header),
    /// A cached absence (negative caching).
    Absent(Header),
    Miss,
}

/// What a write stores.
pub(crate) enum Stored<'a, T: ?Sized> {
    Value(&'a T),
    /// An absence, for negative caching.
    Absent,
}

impl Cache {
    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        key: &CacheKey,
    ) -> Result<Lookup<T>, CacheError> {
        let bytes = self.read_raw(key).await?;
        Ok(self.lookup(key, bytes.as_deref()))
    }

    /// The stored bytes under `key`.
    pub(crate) async fn read_raw(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        self.redis(key.entity(), redis::cmd("GET").arg(key.as_str()))
            .await
    }

    /// What stored bytes hold, counted as a hit or a miss.
    pub(crate) fn lookup<T: DeserializeOwned>(
        &self,
        key: &CacheKey,
        bytes: Option<&[u8]>,
    ) -> Lookup<T> {
        let counters = key.entity().counters();
        let Some(bytes) = bytes else {
            bump(&counters.misses);
            tracing::debug!(key = key.as_str(), "cache miss");
            return Lookup::Miss;
        };
        match self.decode(bytes) {
            Ok(lookup) => {
                bump(&counters.hits);
                tracing::debug!(key = key.as_str(), "cache hit");
                lookup
            }
            Err(reason) => {
                bump(&counters.decode_failures);
                bump(&counters.misses);
                tracing::warn!(key = key.as_str(), %reason, "undecodable cached value, treated as a miss");
                Lookup::Miss
            }
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<Lookup<T>, String> {
        let (header, payload) = Header::unwrap(bytes)?;
        if header.negative {
            return Ok(Lookup::Absent(header));
        }
        if header.compressed {
            let plain = compress::decompress(payload, self.inner.config.max_value_bytes)?;
            CodecKind::decode_with_id(header.codec, &plain)
        } else {
            CodecKind::decode_with_id(header.codec, payload)
        }
        .map(|value| Lookup::Hit(value, header))
        .map_err(|e| e.to_string())
    }

    /// Envelope + codec + optional compression, for a value fresh for `ttl`.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        value: Stored<'_, T>,
        ttl: Duration,
        cost: Duration,
    ) -> Result<Vec<u8>, CacheError> {
        let config = &self.inner.config;
        let mut header = Header::new(config.codec.id(), ttl, cost);
        let mut payload = match value {
            Stored::Value(value) => config.codec.encode(value)?,
            Stored::Absent => {
                header.negative = true;
                Vec::new()
            }
        };
        if config
            .compression_threshold
            .is_some_and(|t| payload.len() > t)
        {
            payload = compress::compress(&payload);
            header.compressed = true;
        }
        Ok(header.wrap(&payload))
    }

    /// Writes `value` under `key` for `ttl` with jitter, overwriting whatever is there and
    /// voiding any loader's lease (its value would be older than this one).
    pub(crate) async fn store<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: Stored<'_, T>,
        ttl: Ttl,
        grace: Duration,
        tags: &[String],
    ) -> Result<(), CacheError> {
        let ttl = self.inner.jitter.apply(self.inner.config.ttl.resolve(ttl));
        let bytes = self.encode(value, ttl, Duration::ZERO)?;
        self.store_encoded(key, &bytes, ttl + grace, Write::Overwrite, tags)
            .await?;
        // Other instances drop their local copy of the old value.
        self.publish(key.entity(), Event::Key(key.as_str().to_owned()))
            .await;
        Ok(())
    }

    /// Writes encoded bytes under `key` to expire from Redis after `ttl` (the jittered
    /// freshness plus any stale grace), unless they exceed the size limit. A variant key is also recorded in its id's variant index, so invalidating
    /// the id finds it without a scan. Returns whether the value was stored: a populate under a
    /// voided lease is not.
    pub(crate) async fn store_encoded(
        &self,
        key: &CacheKey,
        bytes: &[u8],
        ttl: Duration,
        write: Write<'_>,
        tags: &[String],
    ) -> Result<bool, CacheError> {
        let limit = self.inner.config.max_value_bytes;
        if bytes.len() > limit {
            return Err(CacheError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        // One transaction: an invalidation never sees the value without its index entries.
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        match write {
            Write::Populate(Some(token)) => {
                pipeline.add_command(self.populate_command(key, bytes, ttl_ms, token));
            }
            Write::Populate(None) | Write::Overwrite => {
                pipeline
                    .cmd("SET")
                    .arg(key.as_str())
                    .arg(bytes)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
            }
        }
        if let Write::Overwrite = write {
            pipeline.cmd("DEL").arg(key.lease_key()).ignore();
        }
        index::record(&mut pipeline, key, tags, ttl_ms, now_ms());
        let stored = if let Write::Populate(Some(_)) = write {
            let (stored,): (u8,) = self.redis(key.entity(), &pipeline).await?;
            stored == 1
        } else {
            let () = self.redis(key.entity(), &pipeline).await?;
            true
        };
        tracing::debug!(key = key.as_str(), ttl_ms, stored, "cache set");
        Ok(stored)
    }
}

/// How a write treats concurrent loaders' leases.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Write<'a> {
    /// An explicit write (`set`, write-through, forced refresh): voids any lease.
    Overwrite,
    /// A loaded value: stored under the given lease, or unconditionally without one.
    Populate(Option<&'a str>),
}
