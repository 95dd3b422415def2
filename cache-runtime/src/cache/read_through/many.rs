//! Batch reads: many keys read through together, the misses loaded by one loader call.
//!
//! Each key takes the steps of a single read (local tier, Redis and its validity checks, this
//! process's flight, a lease, the store) except the first Redis read, which the batch makes
//! for all its keys in one round trip per 500 keys. The keys then go on together: their
//! leases and stores are sent together, at most 100 keys' calls in flight, and share the
//! connection's pipeline. The loader is called once every
//! key still reading has either asked for it or is waiting for someone else's load (another
//! caller here, or another process holding its lease): waiting for those first could wait
//! for ever on a batch that waits for this one. A key whose awaited load ended without a value
//! asks for the loader again, in a later call with the others in that situation.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::{Future, poll_fn};
use std::hash::Hash;
use std::pin::pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Poll;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, SemaphorePermit, oneshot};
use tracing::field;

use super::{Call, FromRedis, Missed};
use crate::cache::Cache;
use crate::cache::loaded::Optional;
use crate::cache::policy::Policy;
use crate::cache::storage::{Found, Lookup};
use crate::cache::validity::BatchMarks;
use crate::entity::CacheKey;
use crate::metrics::bump;

/// Keys fetched per round trip: a batch of ten thousand keys is read in bounded pieces.
pub(crate) const FETCH_CHUNK: usize = 500;

/// One key of a batch: the id its loader is given, its key, and the tags its value carries.
#[derive(Debug)]
pub(crate) struct BatchItem<I> {
    pub(crate) id: I,
    pub(crate) key: CacheKey,
    pub(crate) tags: Vec<String>,
}

impl<I> Borrow<CacheKey> for BatchItem<I> {
    fn borrow(&self) -> &CacheKey {
        &self.key
    }
}

/// Where a key of a batch is in its read.
const READING: u8 = 0;
/// Waiting for another caller's or process's load of the key.
const WAITING: u8 = 1;
/// Waiting for the batch's loader.
const ASKED: u8 = 2;
/// Given to a loader call that has not answered yet.
const LOADING: u8 = 3;
const DONE: u8 = 4;

/// Redis calls a batch's misses have in flight at most: ten thousand missing keys take their
/// leases and store their values in waves, not in one flood that keeps the connection's other
/// callers waiting and lets calls of the batch itself run past their deadline (with 500, a few
/// stores of a 10,000-key batch timed out in a debug build).
const MISSES_IN_FLIGHT: usize = 100;

/// The state of every key of a batch that missed, and the permits for their Redis calls.
struct States {
    of: Vec<AtomicU8>,
    in_flight: Semaphore,
    /// Lease renewals in flight: apart from `in_flight`, whose permits are waited for in turn
    /// by every key's store, so that a renewal is not held back behind them.
    renewals: Semaphore,
}

impl States {
    fn new(keys: usize) -> Self {
        Self {
            of: (0..keys).map(|_| AtomicU8::new(READING)).collect(),
            in_flight: Semaphore::new(MISSES_IN_FLIGHT),
            renewals: Semaphore::new(MISSES_IN_FLIGHT),
        }
    }

    fn set(&self, slot: usize, state: u8) {
        self.of[slot].store(state, Ordering::Relaxed);
    }

    /// No key is still reading, and some wait for the loader.
    fn ready_to_load(&self) -> bool {
        let mut asked = false;
        for state in &self.of {
            match state.load(Ordering::Relaxed) {
                READING => return false,
                ASKED => asked = true,
                _ => {}
            }
        }
        asked
    }

    /// The keys waiting for the loader, now given to a call of it.
    fn take_asked(&self) -> Vec<usize> {
        let asked = self.of.iter().enumerate().filter(|(_, state)| {
            state
                .compare_exchange(ASKED, LOADING, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        });
        asked.map(|(slot, _)| slot).collect()
    }
}

/// A key's place in its batch: its read says when it waits for someone else's load.
pub(super) struct Member<'a> {
    states: &'a States,
    slot: usize,
}

impl Member<'_> {
    /// Runs `wait` (for another caller's or process's load) marked as waiting, so that the
    /// batch's loader is not held back by it.
    pub(super) async fn waits<F: Future>(member: Option<&Member<'_>>, wait: F) -> F::Output {
        if let Some(member) = member {
            member.states.set(member.slot, WAITING);
        }
        let output = wait.await;
        if let Some(member) = member {
            member.states.set(member.slot, READING);
        }
        output
    }

    /// Runs `call` (Redis commands of this key) once the batch has room for it in flight.
    pub(super) async fn throttled<F: Future>(member: Option<&Member<'_>>, call: F) -> F::Output {
        let _turn = match member {
            Some(member) => member.turn().await,
            None => None,
        };
        call.await
    }

    /// The batch's bound on lease renewals in flight.
    pub(super) fn renewals(&self) -> &Semaphore {
        &self.states.renewals
    }

    /// Room for this key's Redis commands among the batch's, held until dropped.
    pub(super) async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed: a permit is always had in the end.
        self.states.in_flight.acquire().await.ok()
    }
}

/// The misses of distinct keys, and each repeated key's index with its first's.
#[allow(clippy::type_complexity)]
fn first_of_each_key<I, M>(
    items: &[BatchItem<I>],
    misses: Vec<(usize, M)>,
) -> (Vec<(usize, M)>, Vec<(usize, usize)>) {
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(misses.len());
    let mut distinct = Vec::with_capacity(misses.len());
    let mut repeats = Vec::new();
    for (index, miss) in misses {
        match first.entry(items[index].key.as_str()) {
            Entry::Occupied(seen) => repeats.push((index, *seen.get())),
            Entry::Vacant(new) => {
                new.insert(index);
                distinct.push((index, miss));
            }
        }
    }
    (distinct, repeats)
}

/// A key Redis could not be asked about: counted like a single read's, a fallback to the
/// source.
fn unavailable<T>(key: &CacheKey, seen: u64) -> Missed<Optional<T>> {
    bump(&key.entity().counters().fallbacks);
    Missed {
        fallback: None,
        id_token: None,
        redis_up: false,
        seen,
    }
}

/// Each item's policy: the batch's, with the item's own tags where items have tags.
struct Policies<'p, 'a> {
    base: &'p Policy<'a>,
    tagged: Vec<Policy<'p>>,
}

impl<'p, 'a: 'p> Policies<'p, 'a> {
    fn new<I>(items: &'p [BatchItem<I>], base: &'p Policy<'a>) -> Self {
        let tagged = match items.iter().any(|item| !item.tags.is_empty()) {
            true => items
                .iter()
                .map(|item| Policy {
                    tags: &item.tags,
                    ..*base
                })
                .collect(),
            // The usual case: no policy per item to build.
            false => Vec::new(),
        };
        Self { base, tagged }
    }

    fn at(&self, index: usize) -> &Policy<'p> {
        self.tagged.get(index).unwrap_or(self.base)
    }
}

/// What a key's loader is answered with when the batch's loader failed.
#[derive(Debug)]
pub(super) struct LoaderFailed;

/// What a batch read ends with: each item's value (`None`: absent, or its load failed), and
/// the loader's first error.
pub(crate) struct ManyRead<T, E> {
    pub(crate) values: Vec<Option<T>>,
    pub(crate) error: Option<E>,
}

/// A miss's answer: `Ok(None)` is an absence.
type Answer<T> = Result<Optional<T>, LoaderFailed>;

impl Cache {
    /// Reads `items` through, loading the misses with `loader`: called with the ids still
    /// missing, it answers the values it found (ids it leaves out are absent). A key repeated
    /// in `items` is read at each place (a hit costs nothing more than its `GET`) and loaded
    /// once.
    pub(crate) async fn read_many<I, T, E, F, Fut>(
        &self,
        items: &[BatchItem<I>],
        policy: &Policy<'_>,
        loader: F,
    ) -> ManyRead<T, E>
    where
        I: Clone + Eq + Hash,
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Vec<I>) -> Fut,
        Fut: Future<Output = Result<HashMap<I, T>, E>>,
    {
        let mut values: Vec<Option<T>> = items.iter().map(|_| None).collect();
        let policies = Policies::new(items, policy);
        let misses = self.look_up_many(items, &policies, &mut values).await;
        if misses.is_empty() {
            return ManyRead {
                values,
                error: None,
            };
        }
        let (misses, repeats) = first_of_each_key(items, misses);
        // On the heap: the steps of the misses are most of this future's size, and an all-hit
        // batch would otherwise build and move them.
        let mut read = Box::pin(self.load_misses(items, &policies, misses, values, loader)).await;
        for (repeat, first) in repeats {
            read.values[repeat] = read.values[first].clone();
        }
        read
    }

    /// The misses of a batch read through together (see the module's docs); `values` holds
    /// what the first step served.
    async fn load_misses<I, T, E, F, Fut>(
        &self,
        items: &[BatchItem<I>],
        policies: &Policies<'_, '_>,
        misses: Vec<(usize, Missed<Optional<T>>)>,
        mut values: Vec<Option<T>>,
        mut loader: F,
    ) -> ManyRead<T, E>
    where
        I: Clone + Eq + Hash,
        T: Serialize + DeserializeOwned,
        F: FnMut(Vec<I>) -> Fut,
        Fut: Future<Output = Result<HashMap<I, T>, E>>,
    {
        let states = States::new(misses.len());
        let mut answers = Vec::with_capacity(misses.len());
        let mut reads = FuturesUnordered::new();
        for (slot, (index, missed)) in misses.into_iter().enumerate() {
            let (answer, asked) = oneshot::channel::<Answer<T>>();
            answers.push((index, Some(answer)));
            let (key, policy, states) = (&items[index].key, policies.at(index), &states);
            reads.push(async move {
                let span = tracing::debug_span!(
                    "cache_read",
                    entity = key.entity().name(),
                    key = key.as_str(),
                    tier = field::Empty,
                    outcome = field::Empty,
                    batch = true,
                );
                let loader = async move {
                    states.set(slot, ASKED);
                    asked.await.unwrap_or(Err(LoaderFailed))
                };
                let call = Call {
                    key,
                    policy,
                    errors: None,
                    loader,
                    span: &span,
                    member: Some(Member { states, slot }),
                };
                let answer = self.after_miss(call, missed).await;
                states.set(slot, DONE);
                (index, answer)
            });
        }
        let mut error = None;
        // Whether a key ended without a value because a loader call failed: a key with an old
        // value at hand (`stale`) is answered with it instead, and then the error is not one.
        let mut failed = false;
        let mut settle = |(index, answer): (usize, Answer<T>)| match answer {
            Ok(Optional(value)) => values[index] = value,
            Err(LoaderFailed) => failed = true,
        };
        loop {
            // Until every key still reading waits, for the loader or for another's load.
            let ready = poll_fn(|cx| {
                loop {
                    match reads.poll_next_unpin(cx) {
                        Poll::Ready(Some(done)) => settle(done),
                        Poll::Ready(None) => return Poll::Ready(false),
                        Poll::Pending => {
                            return match states.ready_to_load() {
                                true => Poll::Ready(true),
                                false => Poll::Pending,
                            };
                        }
                    }
                }
            })
            .await;
            if !ready {
                break;
            }
            let slots = states.take_asked();
            let ids: Vec<I> = slots
                .iter()
                .map(|&slot| items[answers[slot].0].id.clone())
                .collect();
            // The keys waiting for others go on while the loader runs.
            let mut load = pin!(loader(ids));
            let loaded = poll_fn(|cx| {
                if let Poll::Ready(loaded) = load.as_mut().poll(cx) {
                    return Poll::Ready(loaded);
                }
                while let Poll::Ready(Some(done)) = reads.poll_next_unpin(cx) {
                    settle(done);
                }
                Poll::Pending
            })
            .await;
            match loaded {
                Ok(mut found) => {
                    for &slot in &slots {
                        let id = &items[answers[slot].0].id;
                        let value = found.remove(id);
                        if let Some(answer) = answers[slot].1.take() {
                            let _ = answer.send(Ok(Optional(value)));
                        }
                    }
                    if !found.is_empty() {
                        tracing::warn!(
                            entity = items[0].key.entity().name(),
                            unasked = found.len(),
                            "a batch loader answered ids it was not asked for: ignored"
                        );
                    }
                }
                Err(loader_error) => {
                    for &slot in &slots {
                        if let Some(answer) = answers[slot].1.take() {
                            let _ = answer.send(Err(LoaderFailed));
                        }
                    }
                    error.get_or_insert(loader_error);
                }
            }
        }
        ManyRead {
            values,
            error: error.filter(|_| failed),
        }
    }

    /// The first step for every item: the local tier, then Redis in bounded pipelines. A
    /// served item's value (`None` for an absence) goes into `values`; the others are
    /// answered, missed.
    async fn look_up_many<T>(
        &self,
        items: &[BatchItem<impl Sized>],
        policies: &Policies<'_, '_>,
        values: &mut [Option<T>],
    ) -> Vec<(usize, Missed<Optional<T>>)>
    where
        T: Serialize + DeserializeOwned,
    {
        let mut missed = Vec::new();
        // Without the local tier every item goes to Redis as it is: nothing to gather first.
        let remote = match self.wants_local(policies.base) {
            true => Some(self.look_up_locally(items, policies, values).await),
            false => None,
        };
        // Where the `n`th key sent to Redis is among the items, and its local generation.
        let position = |n: usize| remote.as_ref().map_or((n, 0), |remote| remote[n]);
        let count = remote.as_ref().map_or(items.len(), Vec::len);
        if policies.base.refresh {
            for (index, seen) in (0..count).map(position) {
                let miss = Missed {
                    fallback: None,
                    id_token: None,
                    redis_up: true,
                    seen,
                };
                missed.push((index, miss));
            }
            return missed;
        }
        let marks = BatchMarks::default();
        for start in (0..count).step_by(FETCH_CHUNK) {
            let end = count.min(start + FETCH_CHUNK);
            let fetched = match &remote {
                None => self.fetch_many(&items[start..end]).await,
                Some(remote) => {
                    let keys: Vec<&CacheKey> = remote[start..end]
                        .iter()
                        .map(|&(i, _)| &items[i].key)
                        .collect();
                    self.fetch_many(&keys).await
                }
            };
            let mut fetched = match fetched {
                Ok(found) => found,
                Err(error) => {
                    tracing::debug!(%error, "cache unavailable, calling the source");
                    Vec::new()
                }
            }
            .into_iter();
            for (index, seen) in (start..end).map(position) {
                let (key, policy) = (&items[index].key, policies.at(index));
                let judged = match fetched.next() {
                    // The usual case, in process: no future per key.
                    Some(found) => match self.lookup_now::<T>(key, &found) {
                        Some(lookup) => self.judge_lookup(key, policy, seen, found, lookup),
                        None => {
                            Box::pin(self.judge_reading_marks(key, policy, seen, found, &marks))
                                .await
                        }
                    },
                    None => Err(unavailable(key, seen)),
                };
                match judged {
                    Ok(value) => {
                        super::tell_recorder(key, "redis", "hit");
                        values[index] = value;
                    }
                    Err(miss) => missed.push((index, miss)),
                }
            }
        }
        missed
    }

    /// The local tier's step for every item: a hit goes into `values`; the others are answered
    /// with their local generation before anything is fetched (see `read_through_steps`).
    async fn look_up_locally<T>(
        &self,
        items: &[BatchItem<impl Sized>],
        policies: &Policies<'_, '_>,
        values: &mut [Option<T>],
    ) -> Vec<(usize, u64)>
    where
        T: Serialize + DeserializeOwned,
    {
        let mut remote = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let (key, entity, policy) = (&item.key, item.key.entity(), policies.at(index));
            if !super::key_events::hears(entity) {
                Box::pin(self.start_hearing(entity)).await;
            }
            let local = self.local_tier(policy, entity);
            if let Some(Optional(value)) =
                local.and_then(|local| self.local_hit::<Optional<T>>(local, key, policy))
            {
                super::tell_recorder(key, "local", "hit");
                values[index] = value;
                continue;
            }
            let seen = local.map_or(0, |local| local.generation(key.as_str()));
            remote.push((index, seen));
        }
        remote
    }

    /// [`Self::judge_lookup`] for a value whose marks must be read from Redis first (rare).
    async fn judge_reading_marks<T>(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        seen: u64,
        found: Found,
        marks: &BatchMarks,
    ) -> Result<Option<T>, Missed<Optional<T>>>
    where
        T: Serialize + DeserializeOwned,
    {
        match self.lookup_reading_marks(Some(marks), key, &found).await {
            Ok(lookup) => self.judge_lookup(key, policy, seen, found, lookup),
            Err(error) => {
                tracing::debug!(key = key.as_str(), %error, "cannot check a value's validity");
                Err(unavailable(key, seen))
            }
        }
    }

    /// [`Self::judge_found`], as a batch's first step answers it.
    fn judge_lookup<T>(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        seen: u64,
        found: Found,
        lookup: Lookup<T>,
    ) -> Result<Option<T>, Missed<Optional<T>>>
    where
        T: Serialize + DeserializeOwned,
    {
        let local = self.local_tier(policy, key.entity());
        match self.judge_found::<Optional<T>>(key, policy, local, seen, found, lookup) {
            FromRedis::Fresh(Optional(value)) => Ok(value),
            FromRedis::Load { fallback, id_token } => Err(Missed {
                fallback,
                id_token,
                redis_up: true,
                seen,
            }),
            FromRedis::Unavailable => Err(unavailable(key, seen)),
        }
    }
}
