//! What goes over the wire: envelope + codec + compression, reads and writes of one key.

use std::borrow::Borrow;
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use super::topology::Topology;
use super::validity::{BatchMarks, Stamp};
use crate::bus::Event;
use crate::codec::CodecKind;
use crate::compress;
use crate::entity::CacheKey;
use crate::envelope::{Envelope, Header, MAX_TAG_LEN, MAX_TAGS};
use crate::error::CacheError;
use crate::metrics::bump;

/// What a read found.
pub(crate) enum Lookup<T> {
    Hit(T, Header),
    /// A cached absence (negative caching).
    Absent(Header),
    Miss,
}

/// What one read of a key brought back from Redis.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) bytes: Option<Vec<u8>>,
    /// For a variant key, its id's variants token (read in the same round trip).
    pub(crate) id_token: Option<u64>,
    /// Not read: an invalidation waiting to be replayed keeps the key from Redis, so the
    /// source answers (counted as a fallback, not a miss).
    pub(crate) withheld: bool,
}

impl Found {
    fn withheld() -> Self {
        Self {
            withheld: true,
            ..Self::default()
        }
    }
}

/// What a write stores.
pub(crate) enum Stored<'a, T: ?Sized> {
    Value(&'a T),
    /// An absence, for negative caching.
    Absent,
}

thread_local! {
    /// A `GET`'s buffers, kept for the next read on this thread: building the command anew
    /// costs two allocations and two frees on every hit. (A read that ends on another thread
    /// leaves it there; one lost to a cancelled read is simply built again.)
    static SPARE_GET: Cell<Option<redis::Cmd>> = const { Cell::new(None) };
}

thread_local! {
    /// The codec's output before it is wrapped in its envelope, kept for the next write on
    /// this thread: encoding into a new `Vec` grows it from empty (eight reallocations for
    /// 1 KiB) at every write.
    static ENCODE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Buffers larger than this are not kept (one huge value must not pin its memory).
const MAX_KEPT_BUFFER: usize = 64 * 1024;

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Cache {
    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        key: &CacheKey,
    ) -> Result<Lookup<T>, CacheError> {
        let found = self.fetch(key).await?;
        self.lookup(key, &found).await
    }

    /// The stored bytes under `key` (and its id's token, for a variant): one round trip.
    /// While invalidations wait to be replayed, Redis may still hold what they remove, so
    /// every read goes to the source (a fallback) until they have landed.
    pub(crate) async fn fetch(&self, key: &CacheKey) -> Result<Found, CacheError> {
        if self.inner.replay.any() && self.blanked(&[key]).first() == Some(&true) {
            return Ok(Found::withheld());
        }
        if !self.inner.fence.verified() {
            Box::pin(self.check_fence()).await?;
        }
        let entity = key.entity();
        match key.variants_token_key() {
            None => {
                let mut get = SPARE_GET.take().unwrap_or_default();
                get.clear();
                get.arg("GET").arg(key.as_str());
                let bytes = self.redis(entity, &get).await;
                SPARE_GET.set(Some(get));
                let bytes = bytes?;
                Ok(Found {
                    bytes,
                    id_token: None,
                    withheld: false,
                })
            }
            Some(token_key) => {
                let mut pipeline = redis::pipe();
                pipeline
                    .cmd("GET")
                    .arg(key.as_str())
                    .cmd("GET")
                    .arg(token_key);
                let (bytes, id_token) = self.redis(entity, &pipeline).await?;
                Ok(Found {
                    bytes,
                    id_token,
                    withheld: false,
                })
            }
        }
    }

    /// The stored bytes under each of `keys` (and their ids' tokens, for variants): one round
    /// trip, however many keys: `MGET`s on one Redis, pipelined `GET`s on a cluster.
    pub(crate) async fn fetch_many<K: Borrow<CacheKey>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Found>, CacheError> {
        let Some(first) = keys.first().map(Borrow::borrow) else {
            return Ok(Vec::new());
        };
        let blanked = match self.inner.replay.any() {
            true => self.blanked(&keys.iter().map(Borrow::borrow).collect::<Vec<_>>()),
            false => Vec::new(),
        };
        if !blanked.is_empty() && blanked.iter().all(|&b| b) {
            return Ok(keys.iter().map(|_| Found::withheld()).collect());
        }
        if !self.inner.fence.verified() {
            self.check_fence().await?;
        }
        let replies: Vec<Option<Vec<u8>>> = match self.inner.redis.topology() {
            Some(Topology::Node) => {
                let replies: Vec<Vec<Option<Vec<u8>>>> =
                    self.redis(first.entity(), &mgets(keys)).await?;
                replies.into_iter().flatten().collect()
            }
            // A cluster's keys are in many slots, which one `MGET` cannot span. (Also the
            // first call, before the topology is known.)
            _ => self.redis(first.entity(), &get_pipeline(keys)).await?,
        };
        let mut replies = replies.into_iter();
        let mut found = Vec::with_capacity(keys.len());
        for key in keys.iter().map(Borrow::borrow) {
            let bytes = replies.next().flatten();
            let id_token = match key.has_variant() {
                // A token that is not a number matches no value's: the variant is a miss.
                true => replies
                    .next()
                    .flatten()
                    .and_then(|t| std::str::from_utf8(&t).ok()?.parse().ok()),
                false => None,
            };
            found.push(Found {
                bytes,
                id_token,
                withheld: false,
            });
        }
        // Keys a pending invalidation keeps from Redis go to the source (fallbacks).
        for (found, _) in found.iter_mut().zip(&blanked).filter(|(_, b)| **b) {
            *found = Found::withheld();
        }
        Ok(found)
    }

    /// For each key, whether a pending invalidation keeps its reads from Redis: every key while
    /// one did not reach Redis; on a cluster, only the keys on the shard of an unconfirmed one.
    fn blanked(&self, keys: &[&CacheKey]) -> Vec<bool> {
        let replay = &self.inner.replay;
        let cluster = self.inner.redis.found_cluster();
        let Some(cluster) = cluster.filter(|_| !replay.blanks_all()) else {
            return vec![true; keys.len()];
        };
        let shards: Vec<_> = replay
            .blanked_slots()
            .into_iter()
            .map(|slot| cluster.master(slot))
            .collect();
        keys.iter()
            .map(|key| {
                let master = cluster.master(crate::cluster::slot::slot(key.as_str().as_bytes()));
                shards.iter().any(|shard| match (shard, &master) {
                    (Some(shard), Some(master)) => std::sync::Arc::ptr_eq(shard, master),
                    // A shard without a master now: its keys cannot be read anyway.
                    _ => true,
                })
            })
            .collect()
    }

    /// What fetched bytes hold, counted as a hit or a miss. A value that an invalidation made
    /// invalid is a miss; an error means its validity could not be checked (Redis trouble).
    pub(crate) async fn lookup<T: DeserializeOwned>(
        &self,
        key: &CacheKey,
        found: &Found,
    ) -> Result<Lookup<T>, CacheError> {
        match self.lookup_now(key, found) {
            Some(lookup) => Ok(lookup),
            None => Box::pin(self.lookup_reading_marks(None, key, found)).await,
        }
    }

    /// [`Self::lookup`] without a round trip (the usual case, and no future to build); `None`
    /// when a mark the value depends on must be read from Redis first (nothing counted yet).
    pub(crate) fn lookup_now<T: DeserializeOwned>(
        &self,
        key: &CacheKey,
        found: &Found,
    ) -> Option<Lookup<T>> {
        let Some(bytes) = &found.bytes else {
            match found.withheld {
                true => {
                    bump(&key.entity().counters().fallbacks);
                    tracing::debug!(
                        key = key.as_str(),
                        "cache read withheld while an invalidation waits for replay"
                    );
                }
                false => {
                    bump(&key.entity().counters().misses);
                    tracing::debug!(key = key.as_str(), "cache miss");
                }
            }
            return Some(Lookup::Miss);
        };
        let envelope = match Header::unwrap(bytes) {
            Ok(envelope) => envelope,
            Err(reason) => return Some(self.undecodable(key, reason)),
        };
        let valid = self.still_valid_now(key, &envelope.header, envelope.tags, found.id_token)?;
        Some(self.judge(key, &envelope, valid))
    }

    /// [`Self::lookup`] once a mark had to be read from Redis (rare: callers box it).
    pub(crate) async fn lookup_reading_marks<T: DeserializeOwned>(
        &self,
        batch: Option<&BatchMarks>,
        key: &CacheKey,
        found: &Found,
    ) -> Result<Lookup<T>, CacheError> {
        let Some(Ok(envelope)) = found.bytes.as_deref().map(Header::unwrap) else {
            // Only reached for bytes that unwrapped: [`Self::lookup_now`] answered the rest.
            return Ok(Lookup::Miss);
        };
        let valid = self
            .still_valid_in(batch, key, &envelope.header, envelope.tags, found.id_token)
            .await?;
        Ok(self.judge(key, &envelope, valid))
    }

    /// A value that unwrapped, and whether it is still valid: a hit, or a miss.
    fn judge<T: DeserializeOwned>(
        &self,
        key: &CacheKey,
        envelope: &Envelope<'_>,
        valid: bool,
    ) -> Lookup<T> {
        if !valid {
            bump(&key.entity().counters().misses);
            tracing::debug!(key = key.as_str(), "cache miss: invalidated");
            return Lookup::Miss;
        }
        match self.decode_envelope(envelope) {
            Ok(lookup) => {
                bump(&key.entity().counters().redis_hits);
                tracing::debug!(key = key.as_str(), "cache hit");
                lookup
            }
            Err(reason) => self.undecodable(key, &reason),
        }
    }

    /// Bytes that are not a value of this type (or not a value at all): a miss, counted.
    fn undecodable<T>(&self, key: &CacheKey, reason: &str) -> Lookup<T> {
        let counters = key.entity().counters();
        bump(&counters.decode_failures);
        bump(&counters.misses);
        // A deploy that changed a type without a version bump makes every key of the entity
        // fail once: one WARN per entity, the rest at DEBUG and in the counter.
        if key
            .entity()
            .decode_failure_logged()
            .swap(true, Ordering::Relaxed)
        {
            tracing::debug!(key = key.as_str(), %reason, "undecodable cached value, treated as a miss");
        } else {
            tracing::warn!(key = key.as_str(), %reason, "undecodable cached value, treated as a miss (logged once per entity; the decode_failures counter has them all)");
        }
        Lookup::Miss
    }

    /// Whether fetched bytes are a value that is still valid (without decoding or counting it).
    pub(crate) async fn is_valid(&self, key: &CacheKey, found: &Found) -> Result<bool, CacheError> {
        let Some(Ok(envelope)) = found.bytes.as_deref().map(Header::unwrap) else {
            return Ok(false);
        };
        self.still_valid(key, &envelope.header, envelope.tags, found.id_token)
            .await
    }

    /// Decodes stored bytes without checking their validity (for bytes a leader just loaded).
    pub(crate) fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<Lookup<T>, String> {
        let envelope = Header::unwrap(bytes)?;
        self.decode_envelope(&envelope)
    }

    pub(crate) fn decode_envelope<T: DeserializeOwned>(
        &self,
        envelope: &Envelope<'_>,
    ) -> Result<Lookup<T>, String> {
        let header = envelope.header;
        if header.negative {
            return Ok(Lookup::Absent(header));
        }
        if header.compressed {
            let plain = compress::decompress(envelope.payload, self.inner.config.max_value_bytes)?;
            CodecKind::decode_with_id(header.codec, &plain)
        } else {
            CodecKind::decode_with_id(header.codec, envelope.payload)
        }
        .map(|value| Lookup::Hit(value, header))
        .map_err(|e| e.to_string())
    }

    /// Envelope + codec + compression where it makes the value smaller, for a value fresh for
    /// `ttl`; a value whose encoding exceeds `max_value_bytes` is `TooLarge`, compressible or
    /// not.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        value: Stored<'_, T>,
        ttl: Duration,
        cost: Duration,
        stamp: &Stamp<'_>,
    ) -> Result<Vec<u8>, CacheError> {
        if stamp.tags.len() > MAX_TAGS || stamp.tags.iter().any(|tag| tag.len() > MAX_TAG_LEN) {
            return Err(CacheError::InvalidTags(format!(
                "at most {MAX_TAGS} tags of at most {MAX_TAG_LEN} bytes each"
            )));
        }
        let config = &self.inner.config;
        let mut header = Header::new(config.codec.id(), ttl, cost).written_at(self.now_ms(), ttl);
        header.epoch = stamp.epoch;
        header.id_token = stamp.id_token;
        header.revision = stamp.revision;
        let mut buffer = ENCODE_BUFFER.take();
        buffer.clear();
        if let Stored::Value(value) = value {
            config.codec.encode_into(value, &mut buffer)?;
        } else {
            header.negative = true;
        }
        let wrapped = self.wrap_encoded(header, stamp.tags, &buffer);
        if buffer.capacity() <= MAX_KEPT_BUFFER {
            ENCODE_BUFFER.set(buffer);
        }
        wrapped
    }

    /// Checks the encoded `payload` against the size limit, compresses it past the threshold,
    /// and wraps it in its envelope.
    fn wrap_encoded(
        &self,
        mut header: Header,
        tags: &[String],
        payload: &[u8],
    ) -> Result<Vec<u8>, CacheError> {
        let config = &self.inner.config;
        // One rule for both sides: the limit is on the value as the codec wrote it, which is
        // also what a read allows itself to decompress.
        let limit = config.max_value_bytes;
        if payload.len() > limit {
            return Err(CacheError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        if config
            .compression_threshold
            .is_some_and(|t| payload.len() > t)
        {
            let compressed = compress::compress(payload);
            // Incompressible data grows a little: keep it as it was.
            if compressed.len() < payload.len() {
                header.compressed = true;
                return Ok(header.wrap(tags, &compressed));
            }
        }
        Ok(header.wrap(tags, payload))
    }

    /// Writes encoded bytes under `key` to expire from Redis after `ttl` (the jittered
    /// freshness plus any stale grace), unless they exceed the size limit: one round trip.
    /// Returns whether the value was stored: a populate under a voided lease is not.
    pub(crate) async fn store_encoded(
        &self,
        key: &CacheKey,
        bytes: &[u8],
        ttl: Duration,
        write: Write<'_>,
    ) -> Result<bool, CacheError> {
        let limit = self.inner.config.max_value_bytes;
        if bytes.len() > limit {
            return Err(CacheError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let ttl_ms = millis(ttl);
        let mut pipeline = redis::pipe();
        match write {
            Write::Populate(token) => {
                self.add_populate(&mut pipeline, key, bytes, ttl_ms, token);
            }
            Write::Replace(token) => {
                self.add_populate(&mut pipeline, key, bytes, ttl_ms, token);
                pipeline
                    .cmd("PUBLISH")
                    .arg(key.entity().keys_channel())
                    .arg(Event::Key(key.as_str().to_owned()).encode(self.inner.origin))
                    .ignore();
            }
            Write::Ordered(revision) => {
                self.add_ordered_write(&mut pipeline, key, bytes, ttl_ms, revision);
                pipeline
                    .cmd("PUBLISH")
                    .arg(key.entity().keys_channel())
                    .arg(Event::Key(key.as_str().to_owned()).encode(self.inner.origin))
                    .ignore();
            }
            Write::Overwrite | Write::Unguarded => {
                if let Write::Overwrite = write {
                    // First, on the same connection: a loader must not store after this.
                    pipeline.cmd("UNLINK").arg(key.lease_key()).ignore();
                }
                pipeline
                    .cmd("SET")
                    .arg(key.as_str())
                    .arg(bytes)
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
                if let Write::Overwrite = write {
                    // Other instances drop their local copy of the old value.
                    pipeline
                        .cmd("PUBLISH")
                        .arg(key.entity().keys_channel())
                        .arg(Event::Key(key.as_str().to_owned()).encode(self.inner.origin))
                        .ignore();
                }
            }
        }
        if let Some(token_key) = key.variants_token_key() {
            // The token lives as long as the longest-lived variant written under it.
            pipeline
                .cmd("PEXPIRE")
                .arg(token_key)
                .arg(ttl_ms)
                .arg("GT")
                .ignore();
        }
        // An explicit write replaces what a failover must not bring back: on a cluster it waits
        // for the shard's replicas, and an unconfirmed one fails, so the key is invalidated
        // (and that replayed) instead.
        let entity = Some(key.entity());
        let stored = match write {
            Write::Ordered(_) => {
                let (stored,): (u8,) = self.call_confirmed(entity, &pipeline).await?;
                stored == 1
            }
            Write::Populate(_) | Write::Replace(_) => {
                let (stored,): (u8,) = self.redis(key.entity(), &pipeline).await?;
                stored == 1
            }
            Write::Overwrite => {
                let () = self.call_confirmed(entity, &pipeline).await?;
                true
            }
            Write::Unguarded => {
                let () = self.redis(key.entity(), &pipeline).await?;
                true
            }
        };
        tracing::debug!(key = key.as_str(), ttl_ms, stored, "cache set");
        Ok(stored)
    }
}

/// How a write treats concurrent loaders' leases.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Write<'a> {
    /// An explicit write (`set`, write-through, a forced refresh with leases off): voids any
    /// lease and tells the other instances.
    Overwrite,
    /// A loaded value, stored only while the loader's lease is intact.
    Populate(&'a str),
    /// A refresh's value: stored only while its lease is intact (an invalidation during the
    /// refresh voids it), and announced to the other instances.
    Replace(&'a str),
    /// A loaded value when leases are turned off in the configuration.
    Unguarded,
    /// An explicit write with a revision: like `Overwrite`, unless the key holds a value with
    /// a higher one or its deletion's revision record does.
    Ordered(u64),
}

/// Keys per `MGET`. A long list still goes in one round trip, as several commands: Redis runs a
/// command whole before serving another client, and a thousand values in one would keep them
/// waiting.
const KEYS_PER_MGET: usize = 100;

/// `keys` and their variants' token keys read by `MGET`s of [`KEYS_PER_MGET`] keys, pipelined:
/// on one Redis, one command to build, send and parse per 100 keys instead of one per key,
/// which costs the client less CPU and Redis about a quarter less (BENCHMARKS.md, batch reads).
fn mgets<K: Borrow<CacheKey>>(keys: &[K]) -> redis::Pipeline {
    let mut pipeline = redis::Pipeline::with_capacity(keys.len().div_ceil(KEYS_PER_MGET));
    for chunk in keys.chunks(KEYS_PER_MGET) {
        pipeline.add_command(mget(chunk));
    }
    pipeline
}

/// One `MGET` of `keys` and their variants' token keys, in order.
fn mget<K: Borrow<CacheKey>>(keys: &[K]) -> redis::Cmd {
    // Sized up front, not regrown as hundreds of keys go in (a variant's token key is about as
    // long as its key).
    let keys = || keys.iter().map(Borrow::<CacheKey>::borrow);
    let variants = keys().filter(|key| key.has_variant()).count();
    let key_bytes: usize = keys().map(|key| key.as_str().len()).sum();
    let mut mget = redis::Cmd::with_capacity(
        1 + keys().len() + variants,
        "MGET".len() + key_bytes + variants * 64,
    );
    mget.arg("MGET");
    for key in keys() {
        mget.arg(key.as_str());
        if let Some(token_key) = key.variants_token_key() {
            mget.arg(token_key);
        }
    }
    mget
}

/// [`mgets`] as a pipeline of `GET`s, which a cluster splits per node.
fn get_pipeline<K: Borrow<CacheKey>>(keys: &[K]) -> redis::Pipeline {
    let mut pipeline = redis::Pipeline::with_capacity(keys.len());
    for key in keys.iter().map(Borrow::borrow) {
        pipeline.cmd("GET").arg(key.as_str());
        if let Some(token_key) = key.variants_token_key() {
            pipeline.cmd("GET").arg(token_key);
        }
    }
    pipeline
}
