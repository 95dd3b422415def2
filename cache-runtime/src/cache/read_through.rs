//! Cache-aside reads shared by `get_or_set` and the macros.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use super::storage::{Lookup, Stored};
use crate::entity::CacheKey;
use crate::error::CacheError;
use crate::metrics::bump;
use crate::ttl::Ttl;

/// How a read-through call caches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) ttl: Ttl,
    /// Cache absences for this long (negative caching); `None` leaves them uncached.
    pub(crate) negative_ttl: Option<Ttl>,
    /// Skip the read and overwrite with a fresh value.
    pub(crate) refresh: bool,
}

impl Policy {
    pub(crate) fn new(ttl: Ttl) -> Self {
        Self {
            ttl,
            negative_ttl: None,
            refresh: false,
        }
    }
}

/// What a loader produced, as far as caching is concerned.
pub(crate) trait Loaded: Sized {
    type Value: Serialize + DeserializeOwned;

    /// The value to store, or `None` for an absence.
    fn value(&self) -> Option<&Self::Value>;
    fn from_value(value: Self::Value) -> Self;
    /// The result for a cached absence, if this shape can express one.
    fn absent() -> Option<Self>;
}

/// A loader result that is always a value.
#[derive(Debug)]
pub(crate) struct Plain<T>(pub(crate) T);

/// A loader result that may be absent.
#[derive(Debug)]
pub(crate) struct Optional<T>(pub(crate) Option<T>);

impl<T: Serialize + DeserializeOwned> Loaded for Plain<T> {
    type Value = T;
    fn value(&self) -> Option<&T> {
        Some(&self.0)
    }
    fn from_value(value: T) -> Self {
        Self(value)
    }
    fn absent() -> Option<Self> {
        None
    }
}

impl<T: Serialize + DeserializeOwned> Loaded for Optional<T> {
    type Value = T;
    fn value(&self) -> Option<&T> {
        self.0.as_ref()
    }
    fn from_value(value: T) -> Self {
        Self(Some(value))
    }
    fn absent() -> Option<Self> {
        Some(Self(None))
    }
}

impl Cache {
    /// The cached value under `key`, or else `loader`'s, stored per `policy`. Redis trouble
    /// never fails the call; the loader's error passes through and is not cached.
    pub(crate) async fn read_through<L, E, Fut>(
        &self,
        key: &CacheKey,
        policy: &Policy,
        loader: Fut,
    ) -> Result<L, E>
    where
        L: Loaded,
        Fut: Future<Output = Result<L, E>>,
    {
        let counters = key.entity().counters();
        let redis_healthy = policy.refresh
            || match self.read::<L::Value>(key).await {
                Ok(Lookup::Hit(value)) => return Ok(L::from_value(value)),
                Ok(Lookup::Absent) => match L::absent().filter(|_| policy.negative_ttl.is_some()) {
                    Some(absent) => return Ok(absent),
                    None => true,
                },
                Ok(Lookup::Miss) => true,
                Err(error) => {
                    bump(&counters.fallbacks);
                    tracing::debug!(key = key.as_str(), %error, "cache unavailable, calling the source");
                    false
                }
            };
        bump(&counters.loader_calls);
        let started = Instant::now();
        let loaded = loader
            .await
            .inspect_err(|_| bump(&counters.loader_errors))?;
        // After a failed read, a write would only add a second timeout to this call.
        if redis_healthy {
            let cost = started.elapsed();
            match (loaded.value(), policy.negative_ttl) {
                (Some(value), _) => {
                    self.store_loaded(key, Stored::Value(value), policy.ttl, cost)
                        .await
                }
                (None, Some(ttl)) => {
                    self.store_loaded::<L::Value>(key, Stored::Absent, ttl, cost)
                        .await
                }
                (None, None) => {}
            }
        }
        Ok(loaded)
    }

    /// Stores a loaded value; failures are counted and logged, never returned.
    pub(crate) async fn store_loaded<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: Stored<'_, T>,
        ttl: Ttl,
        cost: Duration,
    ) {
        let counters = key.entity().counters();
        match self.store(key, value, ttl, cost).await {
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
}
