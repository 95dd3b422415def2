//! [`TestCache`]: a cache for one test, isolated from every other test in the process.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{MemoryRedis, TestError};
use crate::cache::Cache;
use crate::cache::storage::Lookup;
use crate::clock::MockClock;
use crate::config::{CacheConfig, CacheConfigBuilder};
use crate::entity::CacheKey;
use crate::error::CacheError;

static NEXT_TEST: AtomicU64 = AtomicU64::new(1);

/// An app prefix no other test cache of any process shares: `test-<pid>-<n>`.
fn unique_app_prefix() -> String {
    format!(
        "test-{}-{}",
        std::process::id(),
        NEXT_TEST.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cache for one test, under an app prefix of its own and with the periodic metrics log off.
/// Run the code under test in [`Self::run`]: the macros there (and in tasks started with
/// [`crate::spawn`]) use this cache, whatever other tests run at the same time.
#[derive(Debug)]
pub struct TestCache {
    cache: Cache,
    clock: Option<MockClock>,
    memory: Option<MemoryRedis>,
}

impl TestCache {
    /// A cache on an in-memory Redis of its own ([`MemoryRedis`]), no `redis-server` needed,
    /// with a [`MockClock`] that both the cache (freshness, stale windows, the breaker's
    /// cooldown) and the in-memory Redis (TTLs) follow: see [`Self::advance`].
    /// Must be called inside a Tokio runtime.
    pub fn in_memory() -> Result<Self, TestError> {
        Self::in_memory_with(|builder| builder)
    }

    /// [`Self::in_memory`] with more settings (`|b| b.lease_ttl(None)`).
    pub fn in_memory_with(
        configure: impl FnOnce(CacheConfigBuilder) -> CacheConfigBuilder,
    ) -> Result<Self, TestError> {
        let clock = MockClock::new();
        let memory = MemoryRedis::with_clock(Arc::new(clock.clone())).map_err(TestError::Io)?;
        let config = configure(builder(&memory.url())).build()?;
        Ok(Self {
            cache: Cache::with_clock(config, Arc::new(clock.clone()))?,
            clock: Some(clock),
            memory: Some(memory),
        })
    }

    /// A cache on the Redis at `url` (a [`super::TestRedis`], say), on the system clock.
    /// Must be called inside a Tokio runtime.
    pub fn on(url: &str) -> Result<Self, TestError> {
        Self::on_with(url, |builder| builder)
    }

    /// [`Self::on`] with more settings.
    pub fn on_with(
        url: &str,
        configure: impl FnOnce(CacheConfigBuilder) -> CacheConfigBuilder,
    ) -> Result<Self, TestError> {
        let config = configure(builder(url)).build()?;
        Ok(Self {
            cache: Cache::new(config)?,
            clock: None,
            memory: None,
        })
    }

    /// Caching off ([`CacheConfigBuilder::disabled`]): every read runs its body, and the
    /// counters still count (a test asserts "loaded once" with no Redis at all).
    pub fn disabled() -> Result<Self, TestError> {
        let config = CacheConfig::builder()
            .app_prefix(unique_app_prefix())
            .metrics_log_interval(None)
            .disabled(true)
            .build()?;
        Ok(Self {
            cache: Cache::new(config)?,
            clock: None,
            memory: None,
        })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The clock of an [`Self::in_memory`] cache.
    pub fn clock(&self) -> Option<&MockClock> {
        self.clock.as_ref()
    }

    /// Moves an [`Self::in_memory`] cache's clock on by `by`: values age (turning stale, then
    /// expiring in the in-memory Redis) without the test sleeping. Returns `false`, moving
    /// nothing, for a cache on a real Redis, whose TTLs follow the system clock only.
    pub fn advance(&self, by: Duration) -> bool {
        match &self.clock {
            Some(clock) => {
                clock.advance(by);
                true
            }
            None => false,
        }
    }

    /// The in-memory Redis of an [`Self::in_memory`] cache.
    pub fn memory(&self) -> Option<&MemoryRedis> {
        self.memory.as_ref()
    }

    /// Runs `future` with this cache in effect for the macros, in it and in every task it
    /// starts with [`crate::spawn`]. While it runs, a macro call outside any scope (a task
    /// started with `tokio::spawn`) is logged at WARN, naming the function, once per function.
    pub async fn run<F: Future>(&self, future: F) -> F::Output {
        crate::global::with_test_cache(self.cache.clone(), future).await
    }

    /// What Redis holds under `key`, decoded, with its TTL: `None` when nothing valid is
    /// stored (never written, expired, invalidated).
    pub async fn stored<T: DeserializeOwned>(
        &self,
        key: &CacheKey,
    ) -> Result<Option<StoredValue<T>>, CacheError> {
        let (value, header) = match self.cache.read::<T>(key).await? {
            Lookup::Hit(value, header) => (Some(value), header),
            Lookup::Absent(header) => (None, header),
            Lookup::Miss => return Ok(None),
        };
        let mut pttl = redis::cmd("PTTL");
        pttl.arg(key.as_str());
        let ttl_ms: i64 = self.cache.call((&pttl).into()).await?;
        let ttl = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0));
        let fresh_for = header.fresh_until_ms.saturating_sub(self.cache.now_ms());
        Ok(Some(StoredValue {
            value,
            ttl,
            fresh_for: Duration::from_millis(fresh_for),
        }))
    }
}

/// A value as stored, from [`TestCache::stored`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredValue<T> {
    /// The value; `None` for a cached absence.
    pub value: Option<T>,
    /// What Redis has left of the key's TTL (the stale window included, with jitter).
    pub ttl: Duration,
    /// How long the value stays fresh (before its stale window, if any).
    pub fresh_for: Duration,
}

fn builder(url: &str) -> CacheConfigBuilder {
    CacheConfig::builder()
        .redis_url(url)
        .app_prefix(unique_app_prefix())
        .metrics_log_interval(None)
}
