//! What goes over the wire: envelope + codec + compression, reads and writes of one key.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use crate::codec::CodecKind;
use crate::compress;
use crate::entity::CacheKey;
use crate::envelope::Header;
use crate::error::CacheError;
use crate::metrics::bump;
use crate::ttl::Ttl;

/// What a read found.
pub(crate) enum Lookup<T> {
    Hit(T),
    /// A cached absence (negative caching).
    Absent,
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
        let counters = key.entity().counters();
        let bytes: Option<Vec<u8>> = self
            .redis(key.entity(), redis::cmd("GET").arg(key.as_str()))
            .await?;
        let Some(bytes) = bytes else {
            bump(&counters.misses);
            tracing::debug!(key = key.as_str(), "cache miss");
            return Ok(Lookup::Miss);
        };
        match self.decode(&bytes) {
            Ok(lookup) => {
                bump(&counters.hits);
                tracing::debug!(key = key.as_str(), "cache hit");
                Ok(lookup)
            }
            Err(reason) => {
                bump(&counters.decode_failures);
                bump(&counters.misses);
                tracing::warn!(key = key.as_str(), %reason, "undecodable cached value, treated as a miss");
                Ok(Lookup::Miss)
            }
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<Lookup<T>, String> {
        let (header, payload) = Header::unwrap(bytes)?;
        if header.negative {
            return Ok(Lookup::Absent);
        }
        if header.compressed {
            let plain = compress::decompress(payload, self.inner.config.max_value_bytes)?;
            CodecKind::decode_with_id(header.codec, &plain)
        } else {
            CodecKind::decode_with_id(header.codec, payload)
        }
        .map(Lookup::Hit)
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

    /// Writes `value` under `key` for `ttl` with jitter.
    pub(crate) async fn store<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: Stored<'_, T>,
        ttl: Ttl,
        cost: Duration,
    ) -> Result<(), CacheError> {
        let ttl = self.inner.config.ttl.resolve(ttl);
        let bytes = self.encode(value, ttl, cost)?;
        self.store_encoded(key, &bytes, ttl).await
    }

    /// Writes encoded bytes under `key` for `ttl` with jitter, unless they exceed the size
    /// limit. A variant key is also recorded in its id's variant index, so invalidating the id
    /// finds it without a scan.
    pub(crate) async fn store_encoded(
        &self,
        key: &CacheKey,
        bytes: &[u8],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let limit = self.inner.config.max_value_bytes;
        if bytes.len() > limit {
            return Err(CacheError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let ttl_ms = u64::try_from(self.inner.jitter.apply(ttl).as_millis()).unwrap_or(u64::MAX);
        let mut set = redis::cmd("SET");
        set.arg(key.as_str()).arg(bytes).arg("PX").arg(ttl_ms);
        match key.variants_index() {
            None => {
                let () = self.redis(key.entity(), &set).await?;
            }
            Some(index) => {
                // The index lives as long as its longest-lived variant: NX gives a new set its
                // first expiry, GT only ever extends it.
                let mut pipeline = redis::pipe();
                pipeline
                    .add_command(set)
                    .ignore()
                    .cmd("SADD")
                    .arg(&index)
                    .arg(key.as_str())
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&index)
                    .arg(ttl_ms)
                    .arg("NX")
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&index)
                    .arg(ttl_ms)
                    .arg("GT")
                    .ignore();
                let () = self.redis(key.entity(), &pipeline).await?;
            }
        }
        tracing::debug!(key = key.as_str(), ttl_ms, "cache set");
        Ok(())
    }
}
