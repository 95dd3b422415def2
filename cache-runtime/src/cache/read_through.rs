//! Cache-aside reads shared by `get_or_set` and the macros, as a sequence of steps:
//! the local tier → Redis, and whether what it holds is still valid → join this process's
//! flight → a lease across processes → load → store and announce.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Cache;
use super::lease::Lease;
use super::loaded::Loaded;
use super::policy::{Known, Policy};
use super::storage::{Lookup, Stored, Write};
use super::validity::Stamp;
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

/// What the Redis step found.
enum FromRedis<L> {
    /// A fresh, valid value: serve it.
    Fresh(L),
    /// Redis answered: load, with an old value to fall back on if it had one.
    Load {
        fallback: Option<Fallback<L>>,
        id_token: Option<u64>,
    },
    /// Redis did not answer: load, and store nothing.
    Unavailable,
}

/// How the loaded value may be stored.
enum Guard {
    /// Under this lease: a write or invalidation during the load voids it.
    Lease(String),
    /// A forced refresh overwrites.
    Overwrite,
    /// Leases are off in the configuration.
    Unguarded,
    /// Not at all (Redis is unavailable, or the lease could not be had).
    NoStore,
}

/// What the lease step ended with.
enum Leased<L> {
    /// Another process's load (or an old value) answered the call.
    Served(L),
    Load(Guard),
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
        let local = self.local_tier(policy);
        // Before anything is fetched: a removal after this keeps what this call fetched out of
        // the local tier.
        let seen = local.map_or(0, LocalTier::generation);
        if let Some(hit) = local
            .filter(|_| policy.known.is_none())
            .and_then(|local| self.local_hit::<L>(local, key, policy))
        {
            return Ok(hit);
        }
        let (mut fallback, id_token, redis_up) =
            match self.look_up_in_redis::<L>(key, policy, local, seen).await {
                FromRedis::Fresh(value) => return Ok(value),
                FromRedis::Load { fallback, id_token } => (fallback, id_token, true),
                FromRedis::Unavailable => (None, None, false),
            };
        let mut leader = loop {
            match self.inner.flights.join(key.as_str()) {
                Join::Leader(leader) => break Some(leader),
                Join::Follower(slot) => {
                    // Someone here is refreshing: serve the old value rather than wait.
                    if let Some(fallback) = fallback.take() {
                        return Ok(fallback.serve(counters, false));
                    }
                    match flight::wait(slot).await {
                        Some(outcome) => match self.follow(outcome, errors.as_ref(), counters) {
                            Some(result) => return result,
                            None => break None,
                        },
                        // The leader's caller went away: take over (or follow whoever did).
                        None => continue,
                    }
                }
            }
        };
        let ttl = self.jittered(policy.options.ttl);
        let grace = policy.options.stale.unwrap_or_default();
        let stamp = match redis_up {
            true => self.stamp_load(key, policy, id_token, ttl + grace).await,
            false => None,
        };
        let guard = match &stamp {
            Some(stamp) => match self
                .lease(key, policy, stamp, &mut leader, &mut fallback)
                .await
            {
                Leased::Served(value) => return Ok(value),
                Leased::Load(guard) => guard,
            },
            None => Guard::NoStore,
        };
        bump(&counters.loader_calls);
        let started = Instant::now();
        let loaded = match (fallback, policy.options.refresh_timeout) {
            (Some(fallback), Some(limit)) => match tokio::time::timeout(limit, loader).await {
                Ok(Ok(loaded)) => loaded,
                failed => {
                    if let Ok(Err(_)) = failed {
                        bump(&counters.loader_errors);
                    }
                    // Fail-safe: the source failed or was too slow, an old value is at hand.
                    self.abandon(key, leader, guard, Outcome::Failed).await;
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
                    self.abandon(key, leader, guard, outcome).await;
                    return match fallback {
                        Some(fallback) => Ok(fallback.serve(counters, true)),
                        None => Err(error),
                    };
                }
            },
        };
        let (encoded, ttl) = self.hand_over(
            policy,
            &loaded,
            leader,
            &guard,
            stamp,
            ttl,
            started.elapsed(),
        );
        self.store_loaded(key, policy, encoded, guard, ttl, seen)
            .await;
        Ok(loaded)
    }

    /// The Redis step: a valid value (fresh, or old enough to refresh), or a miss.
    async fn look_up_in_redis<L: Loaded>(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        local: Option<&LocalTier>,
        seen: u64,
    ) -> FromRedis<L> {
        let counters = key.entity().counters();
        match policy.known {
            Some(Known::Miss) => {
                return FromRedis::Load {
                    fallback: None,
                    id_token: None,
                };
            }
            Some(Known::Unavailable) => return FromRedis::Unavailable,
            None if policy.refresh => {
                return FromRedis::Load {
                    fallback: None,
                    id_token: None,
                };
            }
            None => {}
        }
        let read = async {
            let found = self.fetch(key).await?;
            let lookup = self.lookup::<L::Value>(key, &found).await?;
            Ok::<_, CacheError>((found, lookup))
        };
        let (found, lookup) = match read.await {
            Ok(read) => read,
            Err(error) => {
                bump(&counters.fallbacks);
                tracing::debug!(key = key.as_str(), %error, "cache unavailable, calling the source");
                return FromRedis::Unavailable;
            }
        };
        let options = &policy.options;
        let fallback = match lookup {
            Lookup::Hit(value, header) => match self.age(&header, options) {
                Age::Fresh => {
                    if let (Some(local), Some(bytes)) = (local, found.bytes) {
                        local.insert(key.as_str(), Arc::from(bytes), header.fresh_until_ms, seen);
                    }
                    return FromRedis::Fresh(L::from_value(value));
                }
                age => Some(Fallback::new(L::from_value(value), age, counters)),
            },
            Lookup::Absent(header) => match L::absent().filter(|_| policy.negative_ttl.is_some()) {
                Some(absent) => match self.age(&header, options) {
                    Age::Fresh => return FromRedis::Fresh(absent),
                    age => Some(Fallback::new(absent, age, counters)),
                },
                None => None,
            },
            Lookup::Miss => None,
        };
        FromRedis::Load {
            fallback,
            id_token: found.id_token,
        }
    }

    /// What a waiting caller makes of its leader's outcome; `None` means "load yourself".
    fn follow<L: Loaded, E>(
        &self,
        outcome: Outcome,
        errors: Option<&ErrorSharing<E>>,
        counters: &Counters,
    ) -> Option<Result<L, E>> {
        let result = match outcome {
            Outcome::Error(error) => Err(errors?.unpack(&error)?),
            outcome => Ok(self.shared::<L>(outcome)?),
        };
        bump(&counters.coalesced);
        Some(result)
    }

    /// Across processes: one loader per key through a lease in Redis. Never stores without a
    /// guard: if the lease cannot be had, the value is loaded and not stored.
    async fn lease<L: Loaded>(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        stamp: &Stamp<'_>,
        leader: &mut Option<Leader<'_>>,
        fallback: &mut Option<Fallback<L>>,
    ) -> Leased<L> {
        if policy.refresh {
            return Leased::Load(match policy.lease {
                Some(token) => Guard::Lease(token.to_owned()),
                None => Guard::Overwrite,
            });
        }
        if self.inner.config.lease_ttl.is_none() {
            return Leased::Load(Guard::Unguarded);
        }
        let counters = key.entity().counters();
        for _ in 0..2 {
            match self.acquire_lease(key, stamp).await {
                Lease::Acquired(token) => return Leased::Load(Guard::Lease(token)),
                Lease::Unavailable => return Leased::Load(Guard::NoStore),
                Lease::HeldElsewhere => {
                    // Another process is refreshing: serve the old value rather than wait.
                    if let Some(fallback) = fallback.take() {
                        if let Some(leader) = leader.take() {
                            leader.finish(Outcome::Failed);
                        }
                        return Leased::Served(fallback.serve(counters, false));
                    }
                    if let Some(value) = self.leased_value::<L>(key, leader).await {
                        bump(&counters.coalesced);
                        return Leased::Served(value);
                    }
                    // The holder ended without a valid value: try to take the lease ourselves.
                }
            }
        }
        Leased::Load(Guard::NoStore)
    }

    /// The value another process's lease holder stored, if it is valid; handed to this
    /// process's waiting callers too.
    async fn leased_value<L: Loaded>(
        &self,
        key: &CacheKey,
        leader: &mut Option<Leader<'_>>,
    ) -> Option<L> {
        let found = self.await_leased_value(key).await?;
        if !self.is_valid(key, &found).await.unwrap_or(false) {
            return None;
        }
        let outcome = Outcome::Value(Arc::from(found.bytes?));
        let loaded = self.shared::<L>(outcome.clone())?;
        if let Some(leader) = leader.take() {
            leader.finish(outcome);
        }
        Some(loaded)
    }

    /// Learns what the loaded value is valid under, before the load starts (and before its
    /// lease is taken, which records it). If that cannot be learnt, the value is not stored.
    async fn stamp_load<'a>(
        &self,
        key: &CacheKey,
        policy: &Policy<'a>,
        id_token: Option<u64>,
        physical_ttl: Duration,
    ) -> Option<Stamp<'a>> {
        match self.stamp(key, policy.tags, id_token, physical_ttl).await {
            Ok(stamp) => Some(stamp),
            Err(error) => {
                tracing::debug!(key = key.as_str(), %error, "cannot stamp the load: its value will not be stored");
                None
            }
        }
    }

    /// Encodes the loaded value for Redis and for this process's waiting callers, and hands it
    /// to them; answers the bytes (if any) and the TTL they are fresh for. Synchronous, so no
    /// borrow of the loaded value is held across an await.
    #[allow(clippy::too_many_arguments)]
    fn hand_over<L: Loaded>(
        &self,
        policy: &Policy<'_>,
        loaded: &L,
        leader: Option<Leader<'_>>,
        guard: &Guard,
        stamp: Option<Stamp<'_>>,
        ttl: Duration,
        cost: Duration,
    ) -> (Option<Result<Vec<u8>, CacheError>>, Duration) {
        let (stored, ttl) = match (loaded.value(), policy.negative_ttl) {
            (Some(value), _) => (Some(Stored::Value(value)), ttl),
            (None, Some(negative)) => (Some(Stored::Absent), self.jittered(negative)),
            (None, None) => (None, ttl),
        };
        let stamp = stamp.unwrap_or(Stamp {
            // Only this process's waiting callers see it; it is never stored.
            epoch: 0,
            id_token: None,
            tags: &[],
            floor: 0,
        });
        // Encoded for Redis, and for callers waiting on this flight; with neither, not at all
        // (the open-breaker path stays cheap).
        let wanted =
            !matches!(guard, Guard::NoStore) || leader.as_ref().is_some_and(Leader::has_followers);
        let encoded = stored
            .filter(|_| wanted)
            .map(|stored| self.encode(stored, ttl, cost, &stamp));
        if let Some(leader) = leader {
            leader.finish(match &encoded {
                Some(Ok(bytes)) => Outcome::Value(Arc::from(bytes.as_slice())),
                // A caller that joined after the check above loads for itself.
                None if !wanted => Outcome::Failed,
                None => Outcome::Absent,
                Some(Err(_)) => Outcome::Failed,
            });
        }
        (encoded, ttl)
    }

    /// Stores the encoded value under its guard and keeps it in the local tier; nothing to
    /// store (`None`) ends the lease so that waiting processes load for themselves.
    async fn store_loaded(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        encoded: Option<Result<Vec<u8>, CacheError>>,
        guard: Guard,
        ttl: Duration,
        seen: u64,
    ) {
        let write = match &guard {
            Guard::NoStore => return,
            Guard::Lease(token) => Write::Populate(token),
            Guard::Overwrite => Write::Overwrite,
            Guard::Unguarded => Write::Unguarded,
        };
        let physical_ttl = ttl + policy.options.stale.unwrap_or_default();
        let result = match encoded {
            Some(Ok(bytes)) => {
                let stored = self.store_encoded(key, &bytes, physical_ttl, write).await;
                if let (Ok(true), Some(local)) = (&stored, self.local_tier(policy)) {
                    let fresh_until =
                        now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
                    local.insert(key.as_str(), Arc::from(bytes), fresh_until, seen);
                }
                stored
            }
            Some(Err(error)) => Err(error),
            None => {
                if let Guard::Lease(token) = &guard {
                    self.release_lease(key, token).await;
                }
                return;
            }
        };
        if let (Err(_), Guard::Lease(token)) = (&result, &guard) {
            // Nothing was stored (too large, not encodable): let waiting processes go.
            self.release_lease(key, token).await;
        }
        self.note_store_result(key, result);
    }

    /// `ttl` resolved against the configured classes, with jitter.
    pub(crate) fn jittered(&self, ttl: crate::ttl::Ttl) -> Duration {
        self.inner.jitter.apply(self.inner.config.ttl.resolve(ttl))
    }

    /// The in-process tier, if this read uses it.
    pub(crate) fn local_tier(&self, policy: &Policy<'_>) -> Option<&LocalTier> {
        let wanted = policy.options.local || self.inner.config.local_tier_for_all;
        self.inner.local.as_ref().filter(|_| wanted)
    }

    /// A fresh, still valid value from the in-process tier (never during a forced refresh).
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
        let envelope = Header::unwrap(&bytes).ok()?;
        if !self.still_valid_locally(key.entity(), &envelope.header, envelope.tags) {
            local.remove(key.as_str());
            return None;
        }
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
        guard: Guard,
        outcome: Outcome,
    ) {
        if let Some(leader) = leader {
            leader.finish(outcome);
        }
        if let Guard::Lease(token) = guard {
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
