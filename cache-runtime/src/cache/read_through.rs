//! Cache-aside reads shared by `get_or_set` and the macros.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Cache;
use super::lease::Lease;
use super::loaded::Loaded;
use super::policy::{Known, Policy};
use super::storage::{Lookup, Stored, Write};
use crate::bus::Event;
use crate::entity::CacheKey;
use crate::envelope::Header;
use crate::error::CacheError;
use crate::flight::{self, Join, Leader, Outcome};
use crate::freshness::{ReadOptions, now_ms, refresh_early};
use crate::local::LocalTier;
use crate::metrics::{Counters, bump};
use crate::share::ErrorSharing;

/// What a read makes of a value's age.
pub(crate) enum Age {
    /// Fresh: serve it.
    Fresh,
    /// Fresh, but this read drew an early refresh.
    RefreshEarly,
    /// Past its TTL, inside the stale grace: serve it while one caller refreshes.
    Stale,
}

/// A value to serve instead of waiting for or failing on the loader.
struct Fallback<L> {
    value: L,
    stale: bool,
}

impl<L> Fallback<L> {
    fn new(value: L, age: Age, counters: &Counters) -> Self {
        if matches!(age, Age::RefreshEarly) {
            bump(&counters.early_refreshes);
        }
        Self {
            value,
            stale: matches!(age, Age::Stale),
        }
    }

    /// The old value, counted as a fail-safe answer or a stale one.
    fn serve(self, counters: &Counters, fail_safe: bool) -> L {
        if fail_safe {
            bump(&counters.fail_safe);
        } else if self.stale {
            bump(&counters.stale_served);
        }
        self.value
    }
}

impl Cache {
    /// The cached value under `key`, or else `loader`'s, stored per `policy`. Redis trouble
    /// never fails the call; the loader's error passes through and is not cached unless an old
    /// value may be served instead (fail-safe). Concurrent misses on one key share one loader
    /// call: in this process through a flight, across processes through a lease.
    pub(crate) async fn read_through<L, E, Fut>(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        errors: Option<ErrorSharing<E>>,
        loader: Fut,
    ) -> Result<L, E>
    where
        L: Loaded,
        Fut: Future<Output = Result<L, E>>,
    {
        let counters = key.entity().counters();
        let options = &policy.options;
        let mut fallback: Option<Fallback<L>> = None;
        let local = self.local_tier(policy);
        if let Some(hit) = local
            .filter(|_| policy.known.is_none())
            .and_then(|local| self.local_hit::<L>(local, key, policy))
        {
            return Ok(hit);
        }
        let redis_healthy = match policy.known {
            Some(Known::Miss) => true,
            Some(Known::Unavailable) => false,
            None => {
                policy.refresh
                    || match self.read_raw(key).await {
                        Ok(bytes) => {
                            match self.lookup::<L::Value>(key, bytes.as_deref()) {
                                Lookup::Hit(value, header) => match self.age(&header, options) {
                                    Age::Fresh => {
                                        if let (Some(local), Some(bytes)) = (local, bytes) {
                                            local.insert(
                                                key.as_str(),
                                                Arc::from(bytes),
                                                header.fresh_until_ms,
                                            );
                                        }
                                        return Ok(L::from_value(value));
                                    }
                                    age => {
                                        fallback =
                                            Some(Fallback::new(L::from_value(value), age, counters))
                                    }
                                },
                                Lookup::Absent(header) => {
                                    if let Some(absent) =
                                        L::absent().filter(|_| policy.negative_ttl.is_some())
                                    {
                                        match self.age(&header, options) {
                                            Age::Fresh => return Ok(absent),
                                            age => {
                                                fallback =
                                                    Some(Fallback::new(absent, age, counters))
                                            }
                                        }
                                    }
                                }
                                Lookup::Miss => {}
                            }
                            true
                        }
                        Err(error) => {
                            bump(&counters.fallbacks);
                            tracing::debug!(key = key.as_str(), %error, "cache unavailable, calling the source");
                            false
                        }
                    }
            }
        };
        let leader = loop {
            match self.inner.flights.join(key.as_str()) {
                Join::Leader(leader) => break Some(leader),
                Join::Follower(slot) => {
                    // Someone here is refreshing: serve the old value rather than wait.
                    if let Some(fallback) = fallback.take() {
                        return Ok(fallback.serve(counters, false));
                    }
                    match flight::wait(slot).await {
                        Some(Outcome::Error(error)) => {
                            match errors.and_then(|sharing| sharing.unpack(&error)) {
                                Some(error) => {
                                    bump(&counters.coalesced);
                                    return Err(error);
                                }
                                None => break None,
                            }
                        }
                        Some(outcome) => match self.shared::<L>(outcome) {
                            Some(loaded) => {
                                bump(&counters.coalesced);
                                return Ok(loaded);
                            }
                            None => break None,
                        },
                        // The leader's caller went away: take over (or follow whoever did).
                        None => continue,
                    }
                }
            }
        };
        // Across processes: one loader per key through a lease in Redis.
        let mut lease = None;
        if redis_healthy && !policy.refresh && self.inner.config.lease_ttl.is_some() {
            for _ in 0..2 {
                match self.acquire_lease(key, policy.tags).await {
                    Lease::Acquired(token) => {
                        lease = Some(token);
                        break;
                    }
                    Lease::HeldElsewhere => {
                        // Another process is refreshing: serve the old value rather than wait.
                        if let Some(fallback) = fallback.take() {
                            self.abandon(key, leader, None, Outcome::Failed).await;
                            return Ok(fallback.serve(counters, false));
                        }
                        if let Some(bytes) = self.await_leased_value(key).await {
                            let outcome = Outcome::Value(Arc::from(bytes));
                            if let Some(loaded) = self.shared::<L>(outcome.clone()) {
                                bump(&counters.coalesced);
                                if let Some(leader) = leader {
                                    leader.finish(outcome);
                                }
                                return Ok(loaded);
                            }
                        }
                        // The holder ended without a value: try to take the lease ourselves.
                    }
                    Lease::Unavailable => break,
                }
            }
        }
        bump(&counters.loader_calls);
        let started = Instant::now();
        let loaded = match (fallback, options.refresh_timeout) {
            (Some(fallback), Some(limit)) => match tokio::time::timeout(limit, loader).await {
                Ok(Ok(loaded)) => loaded,
                failed => {
                    if let Ok(Err(_)) = failed {
                        bump(&counters.loader_errors);
                    }
                    // Fail-safe: the source failed or was too slow, an old value is at hand.
                    self.abandon(key, leader, lease, Outcome::Failed).await;
                    return Ok(fallback.serve(counters, true));
                }
            },
            (fallback, _) => match loader.await {
                Ok(loaded) => loaded,
                Err(error) => {
                    bump(&counters.loader_errors);
                    let outcome = match errors {
                        Some(sharing) if fallback.is_none() => Outcome::Error(sharing.pack(&error)),
                        _ => Outcome::Failed,
                    };
                    self.abandon(key, leader, lease, outcome).await;
                    return match fallback {
                        Some(fallback) => Ok(fallback.serve(counters, true)),
                        None => Err(error),
                    };
                }
            },
        };
        let cost = started.elapsed();
        let (stored, ttl) = match (loaded.value(), policy.negative_ttl) {
            (Some(value), _) => (Some(Stored::Value(value)), options.ttl),
            (None, Some(ttl)) => (Some(Stored::Absent), ttl),
            (None, None) => (None, options.ttl),
        };
        let ttl = self.inner.jitter.apply(self.inner.config.ttl.resolve(ttl));
        // Encoded for Redis, and for callers waiting on this flight; with neither, not at all
        // (the open-breaker path stays cheap).
        let wanted = redis_healthy || leader.as_ref().is_some_and(Leader::has_followers);
        let encoded = stored
            .filter(|_| wanted)
            .map(|stored| self.encode(stored, ttl, cost));
        if let Some(leader) = leader {
            leader.finish(match &encoded {
                Some(Ok(bytes)) => Outcome::Value(Arc::from(bytes.as_slice())),
                // A caller that joined after the check above loads for itself.
                None if !wanted => Outcome::Failed,
                None => Outcome::Absent,
                Some(Err(_)) => Outcome::Failed,
            });
        }
        // After a failed read, a write would only add a second timeout to this call.
        if redis_healthy {
            let write = if policy.refresh {
                Write::Overwrite
            } else {
                Write::Populate(lease.as_deref())
            };
            let physical_ttl = ttl + options.stale.unwrap_or_default();
            let result = match encoded {
                Some(Ok(bytes)) => {
                    let stored = self
                        .store_encoded(key, &bytes, physical_ttl, write, policy.tags)
                        .await;
                    if let (Ok(true), Write::Overwrite) = (&stored, write) {
                        // A forced refresh replaced a value other instances may hold locally.
                        self.publish(key.entity(), Event::Key(key.as_str().to_owned()))
                            .await;
                    }
                    if let (Ok(true), Some(local)) = (&stored, local) {
                        let fresh_until = now_ms()
                            .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
                        local.insert(key.as_str(), Arc::from(bytes), fresh_until);
                    }
                    stored
                }
                Some(Err(error)) => Err(error),
                None => {
                    if let Some(token) = &lease {
                        self.release_lease(key, token).await;
                    }
                    Ok(true)
                }
            };
            if let (Err(_), Some(token)) = (&result, &lease) {
                // Nothing was stored (too large, not encodable): let waiting processes go.
                self.release_lease(key, token).await;
            }
            self.note_store_result(key, result);
        }
        Ok(loaded)
    }

    /// The in-process tier, if this read uses it.
    pub(crate) fn local_tier(&self, policy: &Policy<'_>) -> Option<&LocalTier> {
        let wanted = policy.options.local || self.inner.config.local_tier_for_all;
        self.inner.local.as_ref().filter(|_| wanted)
    }

    /// A fresh value from the in-process tier (never during a forced refresh).
    pub(crate) fn local_hit<L: Loaded>(
        &self,
        local: &LocalTier,
        key: &CacheKey,
        policy: &Policy<'_>,
    ) -> Option<L> {
        if policy.refresh {
            return None;
        }
        let bytes = local.get(key.as_str(), now_ms())?;
        let loaded = match self.decode::<L::Value>(&bytes) {
            Ok(Lookup::Hit(value, _)) => L::from_value(value),
            Ok(Lookup::Absent(_)) => L::absent().filter(|_| policy.negative_ttl.is_some())?,
            Ok(Lookup::Miss) | Err(_) => return None,
        };
        let counters = key.entity().counters();
        bump(&counters.hits);
        bump(&counters.local_hits);
        Some(loaded)
    }

    pub(crate) fn age(&self, header: &Header, options: &ReadOptions) -> Age {
        if options.stale.is_none() && options.early_refresh.is_none() {
            // Redis' TTL is the expiry: whatever it still holds is fresh. No clock read on
            // the plain hit path.
            return Age::Fresh;
        }
        let now = now_ms();
        if now < header.fresh_until_ms {
            match options.early_refresh {
                Some(beta) if refresh_early(header, now, beta, rand::random::<f64>()) => {
                    Age::RefreshEarly
                }
                _ => Age::Fresh,
            }
        } else if options.stale.is_some() {
            Age::Stale
        } else {
            // Without a grace period the physical TTL is the logical one: a value Redis still
            // holds is fresh, whatever the clocks of the writer and this reader say.
            Age::Fresh
        }
    }

    /// Ends a load that produced nothing to store: waiters here and in other processes stop
    /// waiting and load for themselves.
    async fn abandon(
        &self,
        key: &CacheKey,
        leader: Option<Leader<'_>>,
        lease: Option<String>,
        outcome: Outcome,
    ) {
        if let Some(leader) = leader {
            leader.finish(outcome);
        }
        if let Some(token) = lease {
            self.release_lease(key, &token).await;
        }
    }

    /// What a waiting caller makes of its leader's outcome; `None` means "load yourself".
    fn shared<L: Loaded>(&self, outcome: Outcome) -> Option<L> {
        match outcome {
            Outcome::Value(bytes) => match self.decode::<L::Value>(&bytes) {
                Ok(Lookup::Hit(value, _)) => Some(L::from_value(value)),
                Ok(Lookup::Absent(_)) => L::absent(),
                Ok(Lookup::Miss) | Err(_) => None,
            },
            Outcome::Absent => L::absent(),
            Outcome::Error(_) | Outcome::Failed => None,
        }
    }

    /// Counts and logs a write of a loaded value that did not happen; it is never an error to
    /// the caller.
    fn note_store_result(&self, key: &CacheKey, result: Result<bool, CacheError>) {
        let counters = key.entity().counters();
        match result {
            Ok(true) => {}
            Ok(false) => {
                bump(&counters.stale_sets_prevented);
                tracing::debug!(
                    key = key.as_str(),
                    "a write or invalidation happened during the load: its result is not stored"
                );
            }
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
