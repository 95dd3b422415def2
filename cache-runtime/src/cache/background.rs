//! Refreshes that run in the background: when a read finds a stale value (inside its grace) or
//! draws an early refresh, it returns that value at once and one task refreshes the key.
//!
//! Only loads that can outlive their caller (`Send + 'static` futures) can be spawned; the
//! macros pick this path for those at compile time and keep the in-caller refresh otherwise.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Cache;
use super::lease::Lease;
use super::loaded::Plain;
use super::policy::{Known, Policy};
use super::read_through::Age;
use super::storage::Lookup;
use crate::entity::CacheKey;
use crate::freshness::ReadOptions;
use crate::metrics::bump;
use crate::share::ErrorSharing;
use crate::ttl::Ttl;

/// What a read found, as far as a background refresh is concerned.
pub(crate) enum Peek<T> {
    Fresh(T),
    /// A value to serve now while the key is refreshed.
    Refresh {
        value: T,
        stale: bool,
    },
    Miss,
    Unavailable,
}

/// The keys this process is refreshing in the background.
#[derive(Debug, Default)]
pub(crate) struct Refreshing(Mutex<HashSet<String>>);

impl Refreshing {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// This process's claim on refreshing one key; released when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    cache: Cache,
    key: String,
    /// The lease the refresh stores under, with leases on.
    lease: Option<String>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.cache.inner.refreshing.lock().remove(&self.key);
    }
}

/// Everything a background refresh needs, owned.
#[derive(Debug)]
pub struct RefreshJob {
    pub(crate) key: CacheKey,
    pub(crate) options: ReadOptions,
    pub(crate) negative_ttl: Option<Ttl>,
    pub(crate) tags: Vec<String>,
    pub(crate) claim: Claim,
}

impl Cache {
    pub(crate) async fn peek<T: serde::Serialize + DeserializeOwned>(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
    ) -> Peek<T> {
        if self.wants_local(policy) && !super::key_events::hears(key.entity()) {
            Box::pin(self.start_hearing(key.entity())).await;
        }
        if let Some(Plain(value)) = self
            .local_tier(policy, key.entity())
            .and_then(|local| self.local_hit::<Plain<T>>(local, key, policy))
        {
            return Peek::Fresh(value);
        }
        let local = self.local_tier(policy, key.entity());
        let seen = local.map_or(0, |local| local.generation(key.as_str()));
        let read = async {
            let found = self.fetch(key).await?;
            let lookup = self.lookup::<T>(key, &found).await?;
            Ok::<_, crate::error::CacheError>((found.bytes, lookup))
        };
        let (bytes, lookup) = match read.await {
            Ok(read) => read,
            Err(error) => {
                bump(&key.entity().counters().fallbacks);
                tracing::debug!(key = key.as_str(), %error, "cache unavailable, calling the source");
                return Peek::Unavailable;
            }
        };
        match lookup {
            Lookup::Hit(value, header) => match self.age(&header, &policy.options) {
                Age::Fresh => {
                    if let (Some(local), Some(bytes)) = (local, bytes) {
                        self.keep_locally(local, key, bytes, header.fresh_until_ms, seen);
                    }
                    Peek::Fresh(value)
                }
                Age::RefreshEarly => {
                    bump(&key.entity().counters().early_refreshes);
                    Peek::Refresh {
                        value,
                        stale: false,
                    }
                }
                Age::Stale => Peek::Refresh { value, stale: true },
            },
            Lookup::Absent(_) | Lookup::Miss => Peek::Miss,
        }
    }

    /// Claims the refresh of `key`: one per process, and with leases on, one across processes.
    pub(crate) async fn claim_refresh(&self, key: &CacheKey, policy: &Policy<'_>) -> Option<Claim> {
        if !self.inner.refreshing.lock().insert(key.as_str().to_owned()) {
            return None;
        }
        let mut claim = Claim {
            cache: self.clone(),
            key: key.as_str().to_owned(),
            lease: None,
        };
        if self.inner.config.lease_ttl.is_some() {
            // The refresh stores under this lease, so a write or invalidation during it wins.
            let physical_ttl =
                self.jittered(policy.options.ttl) + policy.options.stale.unwrap_or_default();
            let stamp = self
                .stamp(key, policy.tags, None, physical_ttl)
                .await
                .ok()?;
            match self.acquire_lease(key, &stamp).await {
                Lease::Acquired(token) => claim.lease = Some(token),
                Lease::HeldElsewhere | Lease::Unavailable => return None,
            }
        }
        Some(claim)
    }

    /// Runs a claimed refresh: the loader's value overwrites the key (and voids any lease);
    /// a failure is logged, the old value stays served until its grace ends.
    pub(crate) async fn run_refresh<T, E, F>(&self, job: RefreshJob, loader: F)
    where
        T: serde::Serialize + DeserializeOwned,
        F: std::future::Future<Output = Result<T, E>>,
    {
        let policy = Policy {
            options: job.options,
            negative_ttl: job.negative_ttl,
            refresh: true,
            tags: &job.tags,
            known: None,
            lease: job.claim.lease.as_deref(),
        };
        let result = self
            .read_through(&job.key, &policy, None, async { loader.await.map(Plain) })
            .await;
        if result.is_err() {
            tracing::warn!(
                key = job.key.as_str(),
                "background refresh failed; the old value is served until its grace ends"
            );
        }
        drop(job.claim);
    }
}

/// Known outcomes of a peek for the inline path.
fn known<T>(peek: &Peek<T>) -> Option<Known> {
    match peek {
        Peek::Miss => Some(Known::Miss),
        Peek::Unavailable => Some(Known::Unavailable),
        Peek::Fresh(_) | Peek::Refresh { .. } => None,
    }
}

/// Starts a background refresh with the loader of the call that claimed it.
pub type Spawner<F> = fn(Cache, RefreshJob, F);

/// The [`Spawner`] for loads that can outlive their caller.
pub(crate) fn spawn_refresh<F, T, E>(cache: Cache, job: RefreshJob, loader: F)
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
{
    // In the caller's cache scope (a test's), and seen by its recorder.
    crate::global::spawn_in_scope(async move { cache.run_refresh(job, loader).await });
}

impl Cache {
    /// Read-through where a value to refresh is served at once and, with a `spawner`, one
    /// background task refreshes it; without one, the caller that claims the refresh runs it.
    pub(crate) async fn read_or_refresh<T, E, F>(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        errors: Option<ErrorSharing<E>>,
        spawner: Option<Spawner<F>>,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, E>>,
    {
        // Caching off: nothing to peek at; `read_through` runs the loader and counts it.
        let Some(spawner) = spawner.filter(|_| !policy.refresh && !self.is_disabled()) else {
            let loaded = self
                .read_through(key, policy, errors, async { loader.await.map(Plain) })
                .await?;
            return Ok(loaded.0);
        };
        let peek = self.peek::<T>(key, policy).await;
        match peek {
            Peek::Fresh(value) => {
                super::read_through::tell_recorder(key, "redis", "hit");
                Ok(value)
            }
            Peek::Refresh { value, stale } => {
                let outcome = if stale { "stale" } else { "hit" };
                super::read_through::tell_recorder(key, "redis", outcome);
                if let Some(claim) = self.claim_refresh(key, policy).await {
                    let job = RefreshJob {
                        key: key.clone(),
                        options: policy.options,
                        negative_ttl: policy.negative_ttl,
                        tags: policy.tags.to_vec(),
                        claim,
                    };
                    spawner(self.clone(), job, loader);
                }
                if stale {
                    bump(&key.entity().counters().stale_served);
                }
                Ok(value)
            }
            miss_or_unavailable => {
                let policy = Policy {
                    known: known(&miss_or_unavailable),
                    ..*policy
                };
                let loaded = self
                    .read_through(key, &policy, errors, async { loader.await.map(Plain) })
                    .await?;
                Ok(loaded.0)
            }
        }
    }

    /// [`Self::get_or_set_with`] for loaders that can outlive the call (`Send + 'static`): with
    /// `stale` or `early_refresh`, a value due for refresh is returned at once and one background
    /// task per key (and, with leases, across processes) refreshes it.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn fetch_rates() -> Result<Vec<f64>, std::io::Error> { Ok(vec![]) }
    /// # async fn demo(cache: cache_runtime::Cache) -> Result<(), Box<dyn std::error::Error>> {
    /// use cache_runtime::{ReadOptions, Ttl};
    ///
    /// const RATES: ReadOptions = ReadOptions::new(Ttl::Short).stale(Duration::from_secs(600));
    /// let key = cache.entity("fx_rates")?.key("eur");
    /// let rates = cache.get_or_set_in_background(&key, RATES, fetch_rates).await?;
    /// println!("{} rates", rates.len());
    /// # Ok(()) }
    /// ```
    pub async fn get_or_set_in_background<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        options: ReadOptions,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let policy = Policy::new(options);
        self.read_or_refresh(
            key,
            &policy,
            None,
            Some(spawn_refresh::<Fut, T, E>),
            loader(),
        )
        .await
    }
}
