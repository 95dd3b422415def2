//! The `Cache` service: explicit `get`/`set`/`delete` and cache-aside `get_or_set`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{Cmd, FromRedisValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::breaker::{Breaker, BreakerState};
use crate::clock::{Clock, SystemClock};
use crate::codec::CodecKind;
use crate::compress;
use crate::config::CacheConfig;
use crate::connection::Pool;
use crate::deadline::Deadlines;
use crate::entity::{CacheKey, Entity};
use crate::envelope::Header;
use crate::error::{CacheError, is_authentication, is_connection_class};
use crate::key::{EntityPrefix, NameError};
use crate::metrics::{EntityMetrics, bump};
use crate::report;
use crate::ttl::{Jitter, Ttl};

/// A handle to the cache; clones share one pool, breaker and set of counters.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use cache_runtime::{Cache, CacheConfig, Ttl};
///
/// let cache = Cache::new(CacheConfig::builder().app_prefix("shop").build()?)?;
/// let products = cache.entity("product")?;
/// let name: Result<String, std::io::Error> = cache
///     .get_or_set(&products.key(&42u64), Ttl::Medium, || async { Ok("lamp".to_owned()) })
///     .await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    config: CacheConfig,
    pool: Pool,
    deadlines: Deadlines,
    breaker: Breaker,
    jitter: Jitter,
    entities: Mutex<HashMap<(String, u32), Entity>>,
}

impl Inner {
    pub(crate) fn metrics(&self) -> Vec<EntityMetrics> {
        let mut all: Vec<EntityMetrics> = self
            .entities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(Entity::metrics)
            .collect();
        all.sort_by(|a, b| a.entity.cmp(&b.entity));
        all
    }
}

/// What a read found.
enum Lookup<T> {
    Hit(T),
    Miss,
}

impl Cache {
    /// A cache over `config`. Connects lazily: this never blocks and succeeds while Redis is
    /// down. Must be called inside a Tokio runtime.
    pub fn new(config: CacheConfig) -> Result<Self, CacheError> {
        Self::with_clock(config, Arc::new(SystemClock::default()))
    }

    /// Like [`Self::new`], with the clock the circuit breaker measures its cooldown on.
    pub fn with_clock(config: CacheConfig, clock: Arc<dyn Clock>) -> Result<Self, CacheError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| CacheError::NoRuntime)?;
        let pool = Pool::new(
            &config.redis_url,
            config.pool_size,
            config.operation_timeout,
        )
        .map_err(CacheError::from_redis)?;
        let inner = Arc::new(Inner {
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown, clock),
            jitter: Jitter::new(config.jitter_percent),
            deadlines: Deadlines::new(config.operation_timeout, &runtime),
            pool,
            entities: Mutex::new(HashMap::new()),
            config,
        });
        if let Some(interval) = inner.config.metrics_log_interval {
            runtime.spawn(report::run(Arc::downgrade(&inner), interval));
        }
        Ok(Self { inner })
    }

    /// The configuration this cache runs with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The entity `name` at the configured schema version.
    pub fn entity(&self, name: &str) -> Result<Entity, NameError> {
        self.entity_at_version(name, self.inner.config.version)
    }

    /// The entity `name` pinned to its own schema `version` (for migrating one type).
    pub fn entity_at_version(&self, name: &str, version: u32) -> Result<Entity, NameError> {
        let mut entities = self
            .inner
            .entities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entity) = entities.get(&(name.to_owned(), version)) {
            return Ok(entity.clone());
        }
        let prefix = EntityPrefix::new(&self.inner.config.app_prefix, version, name)?;
        let entity = Entity::new(prefix);
        entities.insert((name.to_owned(), version), entity.clone());
        Ok(entity)
    }

    /// Snapshots of every entity's counters, sorted by name.
    pub fn metrics(&self) -> Vec<EntityMetrics> {
        self.inner.metrics()
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// How many times the circuit breaker changed state since the cache was created.
    pub fn breaker_transitions(&self) -> u64 {
        self.inner.breaker.transitions()
    }

    /// The value stored under `key`, or `None` on a miss. A stored value that cannot be decoded
    /// (an older struct shape, foreign bytes) is a miss.
    pub async fn get<T: DeserializeOwned>(&self, key: &CacheKey) -> Result<Option<T>, CacheError> {
        match self.read(key).await? {
            Lookup::Hit(value) => Ok(Some(value)),
            Lookup::Miss => Ok(None),
        }
    }

    /// Stores `value` under `key` for `ttl` (with jitter).
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: &T,
        ttl: Ttl,
    ) -> Result<(), CacheError> {
        let (bytes, ttl) = self.encode(value, ttl, Duration::ZERO)?;
        self.store(key, bytes, ttl).await
    }

    /// Deletes `key`; `true` when something was deleted.
    pub async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let removed: u64 = self
            .redis(key.entity(), redis::cmd("UNLINK").arg(key.as_str()))
            .await?;
        tracing::debug!(key = key.as_str(), removed, "cache delete");
        Ok(removed > 0)
    }

    /// Cache-aside: the value under `key`, or else `loader`'s value, stored for `ttl`.
    ///
    /// Redis trouble never fails this call: on any Redis error the loader is called and its
    /// result returned. The loader's own error passes through unchanged and is not cached.
    pub async fn get_or_set<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        ttl: Ttl,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = key.entity().counters();
        let redis_healthy = match self.read::<T>(key).await {
            Ok(Lookup::Hit(value)) => return Ok(value),
            Ok(Lookup::Miss) => true,
            Err(error) => {
                bump(&counters.fallbacks);
                tracing::debug!(key = key.as_str(), %error, "cache unavailable, calling the source");
                false
            }
        };
        bump(&counters.loader_calls);
        let started = Instant::now();
        let value = loader()
            .await
            .inspect_err(|_| bump(&counters.loader_errors))?;
        // After a failed read, a write would only add a second timeout to this call.
        if redis_healthy {
            self.store_loaded(key, &value, ttl, started.elapsed()).await;
        }
        Ok(value)
    }

    async fn store_loaded<T: Serialize>(
        &self,
        key: &CacheKey,
        value: &T,
        ttl: Ttl,
        cost: Duration,
    ) {
        let counters = key.entity().counters();
        let result = match self.encode(value, ttl, cost) {
            Ok((bytes, ttl)) => self.store(key, bytes, ttl).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {}
            Err(CacheError::TooLarge { size, limit }) => {
                bump(&counters.oversize_skips);
                if !counters.oversize_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        entity = key.entity().name(),
                        size,
                        limit,
                        "value too large to cache; returned uncached (logged once per entity)"
                    );
                }
            }
            Err(error) => {
                tracing::debug!(key = key.as_str(), %error, "could not store loaded value")
            }
        }
    }

    /// Envelope + codec + optional compression, and the jittered TTL to store it for.
    fn encode<T: Serialize + ?Sized>(
        &self,
        value: &T,
        ttl: Ttl,
        cost: Duration,
    ) -> Result<(Vec<u8>, Duration), CacheError> {
        let config = &self.inner.config;
        let ttl = config.ttl.resolve(ttl);
        let mut header = Header::new(config.codec.id(), ttl, cost);
        let mut payload = config.codec.encode(value)?;
        if config
            .compression_threshold
            .is_some_and(|t| payload.len() > t)
        {
            payload = compress::compress(&payload);
            header.compressed = true;
        }
        let bytes = header.wrap(&payload);
        if bytes.len() > config.max_value_bytes {
            return Err(CacheError::TooLarge {
                size: bytes.len(),
                limit: config.max_value_bytes,
            });
        }
        Ok((bytes, self.inner.jitter.apply(ttl)))
    }

    async fn store(&self, key: &CacheKey, bytes: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let set = redis::cmd("SET")
            .arg(key.as_str())
            .arg(bytes)
            .arg("PX")
            .arg(ttl_ms)
            .to_owned();
        let () = self.redis(key.entity(), &set).await?;
        tracing::debug!(key = key.as_str(), ttl_ms, "cache set");
        Ok(())
    }

    async fn read<T: DeserializeOwned>(&self, key: &CacheKey) -> Result<Lookup<T>, CacheError> {
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
            Ok(value) => {
                bump(&counters.hits);
                tracing::debug!(key = key.as_str(), "cache hit");
                Ok(Lookup::Hit(value))
            }
            Err(reason) => {
                bump(&counters.decode_failures);
                bump(&counters.misses);
                tracing::warn!(key = key.as_str(), %reason, "undecodable cached value, treated as a miss");
                Ok(Lookup::Miss)
            }
        }
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        let (header, payload) = Header::unwrap(bytes)?;
        if header.compressed {
            let plain = compress::decompress(payload, self.inner.config.max_value_bytes)?;
            CodecKind::decode_with_id(header.codec, &plain)
        } else {
            CodecKind::decode_with_id(header.codec, payload)
        }
        .map_err(|e| e.to_string())
    }

    /// Runs `cmd` under the breaker and the operation timeout, counting failures against
    /// `entity`.
    async fn redis<T: FromRedisValue>(&self, entity: &Entity, cmd: &Cmd) -> Result<T, CacheError> {
        let result = self.call(cmd).await;
        if result.is_err() {
            bump(&entity.counters().redis_errors);
        }
        result
    }

    async fn call<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CacheError> {
        let inner = &*self.inner;
        let permit = inner.breaker.permit().ok_or(CacheError::BreakerOpen)?;
        let (ticket, mut conn) = inner.pool.connection();
        let attempt = async {
            match cmd.query_async(&mut conn).await {
                // A refused connection means the command was never sent, so sending it again
                // is safe. It is what a connection left over from before a Redis restart
                // reports once; the manager has started a fresh connection by then.
                Err(error) if error.is_connection_refusal() => cmd.query_async(&mut conn).await,
                other => other,
            }
        };
        let timeout = inner.config.operation_timeout;
        match inner.deadlines.bound(attempt).await {
            Err(_) => {
                inner.breaker.record(permit, true);
                Err(CacheError::Timeout(timeout))
            }
            Ok(Ok(value)) => {
                inner.breaker.record(permit, false);
                Ok(value)
            }
            Ok(Err(error)) if error.is_timeout() => {
                inner.breaker.record(permit, true);
                Err(CacheError::Timeout(timeout))
            }
            Ok(Err(error)) => {
                if is_authentication(&error) {
                    inner.pool.replace(ticket);
                }
                inner.breaker.record(permit, is_connection_class(&error));
                Err(CacheError::from_redis(error))
            }
        }
    }
}
