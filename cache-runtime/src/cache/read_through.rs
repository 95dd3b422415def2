//! Cache-aside reads shared by `get_or_set` and the macros, as a sequence of steps:
//! the local tier → Redis, and whether what it holds is still valid → join this process's
//! flight → a lease across processes → load → store and announce.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::{Instrument as _, Span, field};

use super::loaded::Loaded;
use super::policy::{Known, Policy};
use super::storage::{Found, Lookup};
use super::validity::Stamp;
use super::{Cache, key_events};
use crate::entity::CacheKey;
use crate::error::CacheError;
use crate::flight::{self, Join, Leader, Outcome};
use crate::local::LocalTier;
use crate::metrics::{Counters, bump};
use crate::share::ErrorSharing;

mod age;
mod lease_step;
mod local_step;
mod many;
mod store_step;

pub(crate) use age::Age;
use age::Fallback;
use many::Member;
pub(crate) use many::{BatchItem, ManyRead};

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

/// One read-through call: the key and how to read it, and what answers a miss.
struct Call<'a, 'p, E, Fut> {
    key: &'a CacheKey,
    policy: &'a Policy<'p>,
    errors: Option<ErrorSharing<E>>,
    loader: Fut,
    /// The call's `cache_read` span, where it records where the answer came from.
    span: &'a Span,
    /// In a batch: tells the batch when this key waits for someone else's load.
    member: Option<Member<'a>>,
}

/// What a read that did not end in a hit knows.
struct Missed<L> {
    fallback: Option<Fallback<L>>,
    id_token: Option<u64>,
    redis_up: bool,
    /// The local tier's generation before anything was fetched.
    seen: u64,
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

/// What joining this process's flight for a key gave.
enum Joined<'a, L, E> {
    /// Another caller's load (or an old value) answered the call.
    Done(Result<L, E>),
    /// This caller loads: as the flight's leader, or alone (`None`) when the leader's outcome
    /// could not be shared.
    Lead(Option<Leader<'a>>),
}

/// How the loader ended.
enum Ran<L, E> {
    Loaded(L),
    /// What to tell the flight's waiters, and the call's answer (the error, or an old value).
    Failed(Outcome, Result<L, E>),
}

/// Records where a read's answer came from on its span: `tier` is `local`, `redis` or
/// `source`; `outcome` is `hit`, `miss`, `stale`, `coalesced`, `fallback` or `error`.
fn served(span: &Span, key: &CacheKey, tier: &'static str, outcome: &'static str) {
    span.record("tier", tier);
    span.record("outcome", outcome);
    tell_recorder(key, tier, outcome);
}

/// Tells a recorder in effect (`testing::record`, feature `testing`) how a read was answered.
#[inline]
pub(crate) fn tell_recorder(key: &CacheKey, tier: &'static str, outcome: &'static str) {
    #[cfg(feature = "testing")]
    crate::testing::recorded(key, tier, outcome);
    #[cfg(not(feature = "testing"))]
    let _ = (key, tier, outcome);
}

impl Cache {
    /// The cached value under `key`, or else `loader`'s, stored per `policy`. Redis trouble
    /// never fails the call; the loader's error passes through and is not cached unless an old
    /// value may be served instead (fail-safe). Concurrent misses on one key share one loader
    /// call: in this process through a flight, across processes through a lease.
    ///
    /// Runs in a `cache_read` span (DEBUG) with the entity, the key, and where the answer came
    /// from (`tier`, `outcome`).
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
        let span = tracing::debug_span!(
            "cache_read",
            entity = key.entity().name(),
            key = key.as_str(),
            tier = field::Empty,
            outcome = field::Empty,
        );
        let steps = self.read_through_steps(Call {
            key,
            policy,
            errors,
            loader,
            span: &span,
            member: None,
        });
        // A disabled span (DEBUG off) records nothing: entering and leaving it at every poll
        // would cost the hit path for nothing.
        match span.is_disabled() {
            true => steps.await,
            false => steps.instrument(span.clone()).await,
        }
    }

    async fn read_through_steps<L, E, Fut>(&self, call: Call<'_, '_, E, Fut>) -> Result<L, E>
    where
        L: Loaded,
        Fut: Future<Output = Result<L, E>>,
    {
        if self.is_disabled() {
            return Box::pin(self.read_disabled(call)).await;
        }
        let Call {
            key, policy, span, ..
        } = call;
        if self.wants_local(policy) && !key_events::hears(key.entity()) {
            // The entity's first read through the local tier here: on the heap, once.
            Box::pin(self.start_hearing(key.entity())).await;
        }
        let local = self.local_tier(policy, key.entity());
        if let Some(hit) = local
            .filter(|_| policy.known.is_none())
            .and_then(|local| self.local_hit::<L>(local, key, policy))
        {
            served(span, key, "local", "hit");
            return Ok(hit);
        }
        // Before anything is fetched from Redis: a removal after this keeps what this call
        // fetched out of the local tier.
        let seen = local.map_or(0, |local| local.generation(key.as_str()));
        let (fallback, id_token, redis_up) =
            match self.look_up_in_redis::<L>(key, policy, local, seen).await {
                FromRedis::Fresh(value) => {
                    served(span, key, "redis", "hit");
                    return Ok(value);
                }
                FromRedis::Load { fallback, id_token } => (fallback, id_token, true),
                FromRedis::Unavailable => (None, None, false),
            };
        // On the heap: the steps of a miss are most of this future's size, and a hit would
        // otherwise move them at every await.
        Box::pin(self.after_miss(
            call,
            Missed {
                fallback,
                id_token,
                redis_up,
                seen,
            },
        ))
        .await
    }

    /// A read with caching off: the loader's answer, counted as a miss and a loader call.
    async fn read_disabled<L, E, Fut>(&self, call: Call<'_, '_, E, Fut>) -> Result<L, E>
    where
        Fut: Future<Output = Result<L, E>>,
    {
        let counters = call.key.entity().counters();
        bump(&counters.misses);
        bump(&counters.loader_calls);
        served(call.span, call.key, "source", "miss");
        call.loader
            .await
            .inspect_err(|_| bump(&counters.loader_errors))
    }

    /// Everything after a miss (or an old value, or Redis unavailable): join the flight, take
    /// the lease, load, store.
    async fn after_miss<L, E, Fut>(
        &self,
        call: Call<'_, '_, E, Fut>,
        missed: Missed<L>,
    ) -> Result<L, E>
    where
        L: Loaded,
        Fut: Future<Output = Result<L, E>>,
    {
        let Call {
            key,
            policy,
            errors,
            loader,
            span,
            member,
        } = call;
        let Missed {
            mut fallback,
            id_token,
            redis_up,
            seen,
        } = missed;
        let counters = key.entity().counters();
        if policy.refresh {
            // A refresh runs its own load: what a load in flight read may be what it replaces.
            self.inner.flights.detach_key(key.as_str());
        }
        // A caller with an old value at hand is answered with it when someone else loads.
        let had_old_value = fallback.is_some();
        let mut leader = match self
            .join_flight(key, &mut fallback, errors.as_ref(), member.as_ref())
            .await
        {
            Joined::Done(answer) => {
                match had_old_value {
                    true => served(span, key, "redis", "stale"),
                    false => served(span, key, "source", "coalesced"),
                }
                return answer;
            }
            Joined::Lead(leader) => leader,
        };
        let ttl = self.jittered(policy.options.ttl);
        let grace = policy.options.stale.unwrap_or_default();
        // What an unstamped value (Redis unavailable) is checked against when handed to this
        // process's waiting callers: the epoch known before the load, as a stamp would be.
        let known = self.inner.marks.known();
        let stamp = match redis_up {
            true => {
                let stamping = self.stamp_load(key, policy, id_token, ttl + grace);
                Member::throttled(member.as_ref(), stamping).await
            }
            false => None,
        };
        let guard = match &stamp {
            Some(stamp) => match self
                .lease(
                    key,
                    policy,
                    stamp,
                    &mut leader,
                    &mut fallback,
                    member.as_ref(),
                )
                .await
            {
                Leased::Served(value) => {
                    match had_old_value && fallback.is_none() {
                        true => served(span, key, "redis", "stale"),
                        false => served(span, key, "source", "coalesced"),
                    }
                    return Ok(value);
                }
                Leased::Load(guard) => guard,
            },
            None => Guard::NoStore,
        };
        bump(&counters.loader_calls);
        let started = Instant::now();
        let loading = self.run_loader(loader, fallback, policy, errors, counters);
        let ran = match &guard {
            // A load slower than the lease keeps it, so slow sources get cached too.
            Guard::Lease(token) => {
                tokio::select! {
                    ran = loading => ran,
                    never = self.renew_lease(key, token, member.as_ref().map(Member::renewals)) => match never {},
                }
            }
            _ => loading.await,
        };
        let loaded = match ran {
            Ran::Loaded(loaded) => loaded,
            Ran::Failed(outcome, answer) => {
                match &answer {
                    Ok(_) => served(span, key, "redis", "stale"),
                    Err(_) => served(span, key, "source", "error"),
                }
                let abandoning = self.abandon(key, leader, guard, outcome);
                Member::throttled(member.as_ref(), abandoning).await;
                return answer;
            }
        };
        let followers = leader.as_ref().is_some_and(Leader::has_followers);
        let encoded = self.encode_loaded(
            policy,
            &loaded,
            followers,
            &guard,
            stamp.unwrap_or_else(|| Stamp::unstored(known, policy.tags)),
            ttl,
            started.elapsed(),
        );
        // In a batch, the store may wait its turn: the lease is kept meanwhile, or a long
        // wait would let it lapse and the value go unstored.
        let _turn = match (&guard, member.as_ref()) {
            (Guard::Lease(token), Some(member)) => {
                tokio::select! {
                    turn = member.turn() => turn,
                    never = self.renew_lease(key, token, Some(member.renewals())) => match never {},
                }
            }
            _ => None,
        };
        self.hand_over_and_store(key, policy, leader, encoded, guard, seen)
            .await;
        served(
            span,
            key,
            "source",
            if redis_up { "miss" } else { "fallback" },
        );
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
            let lookup = match self.lookup_now::<L::Value>(key, &found) {
                Some(lookup) => lookup,
                // A mark to read from Redis first (rare): on the heap.
                None => Box::pin(self.lookup_reading_marks(None, key, &found)).await?,
            };
            Ok::<_, CacheError>((found, lookup))
        };
        match read.await {
            Ok((found, lookup)) => self.judge_found(key, policy, local, seen, found, lookup),
            Err(error) => {
                bump(&counters.fallbacks);
                tracing::debug!(key = key.as_str(), %error, "cache unavailable, calling the source");
                FromRedis::Unavailable
            }
        }
    }

    /// What a value read from Redis (already checked for validity) means for the call: serve
    /// it (kept in the local tier too), or load, with it as an old value to fall back on.
    fn judge_found<L: Loaded>(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        local: Option<&LocalTier>,
        seen: u64,
        found: Found,
        lookup: Lookup<L::Value>,
    ) -> FromRedis<L> {
        let counters = key.entity().counters();
        let options = &policy.options;
        let fallback = match lookup {
            Lookup::Hit(value, header) => match self.age(&header, options) {
                Age::Fresh => {
                    if let (Some(local), Some(bytes)) = (local, found.bytes) {
                        self.keep_locally(local, key, bytes, header.fresh_until_ms, seen);
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

    /// In this process: one loader per key. A caller that finds a flight waits for its
    /// outcome, unless it has an old value to serve meanwhile.
    async fn join_flight<L: Loaded, E>(
        &self,
        key: &CacheKey,
        fallback: &mut Option<Fallback<L>>,
        errors: Option<&ErrorSharing<E>>,
        member: Option<&Member<'_>>,
    ) -> Joined<'_, L, E> {
        let counters = key.entity().counters();
        loop {
            match self.inner.flights.join(key.as_str()) {
                Join::Leader(leader) => return Joined::Lead(Some(leader)),
                Join::Follower(slot) => {
                    // Someone here is refreshing: serve the old value rather than wait.
                    if let Some(fallback) = fallback.take() {
                        return Joined::Done(Ok(fallback.serve(counters, false)));
                    }
                    let outcome = Member::waits(member, flight::wait(slot)).await;
                    match outcome {
                        // A value an invalidation overtook: join the flight after it.
                        Some(outcome) if !self.handed_over_valid(key, &outcome).await => {
                            continue;
                        }
                        Some(outcome) => {
                            return match self.follow(outcome, errors, counters) {
                                Some(answer) => Joined::Done(answer),
                                None => Joined::Lead(None),
                            };
                        }
                        // The leader's caller went away: take over (or follow whoever did).
                        None => continue,
                    }
                }
            }
        }
    }

    /// Runs the loader; with an old value at hand and a refresh timeout, a loader that fails
    /// or is too slow is answered with the old value (fail-safe).
    async fn run_loader<L, E, Fut>(
        &self,
        loader: Fut,
        fallback: Option<Fallback<L>>,
        policy: &Policy<'_>,
        errors: Option<ErrorSharing<E>>,
        counters: &Counters,
    ) -> Ran<L, E>
    where
        Fut: Future<Output = Result<L, E>>,
    {
        match (fallback, policy.options.refresh_timeout) {
            (Some(fallback), Some(limit)) => match tokio::time::timeout(limit, loader).await {
                Ok(Ok(loaded)) => Ran::Loaded(loaded),
                failed => {
                    if let Ok(Err(_)) = failed {
                        bump(&counters.loader_errors);
                    }
                    Ran::Failed(Outcome::Failed, Ok(fallback.serve(counters, true)))
                }
            },
            (fallback, _) => match loader.await {
                Ok(loaded) => Ran::Loaded(loaded),
                Err(error) => {
                    bump(&counters.loader_errors);
                    let outcome = match errors {
                        Some(sharing) if fallback.is_none() => Outcome::Error(sharing.pack(&error)),
                        _ => Outcome::Failed,
                    };
                    let answer = match fallback {
                        Some(fallback) => Ok(fallback.serve(counters, true)),
                        None => Err(error),
                    };
                    Ran::Failed(outcome, answer)
                }
            },
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
}
