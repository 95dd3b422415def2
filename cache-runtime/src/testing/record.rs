//! Recorded reads: how the cache answered each read of a future.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::entity::CacheKey;

/// Where a read's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The in-process tier.
    Local,
    /// Redis.
    Redis,
    /// The loader (the function's body), or another caller's call of it.
    Source,
}

/// How a read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A cached value.
    Hit,
    /// Nothing (valid) cached: the loader ran.
    Miss,
    /// Another caller's load of the same key, awaited.
    Coalesced,
    /// An old value, served while (or because) a refresh ran.
    Stale,
    /// Redis unavailable: the loader ran, nothing was stored.
    Fallback,
    /// The loader failed.
    Error,
}

/// One read, as the cache answered it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Read {
    pub entity: String,
    /// The whole key (`<app>:v<N>:<entity>:<id>[:<variant>]`).
    pub key: String,
    pub tier: Tier,
    pub outcome: Outcome,
}

type Reads = Arc<Mutex<Vec<Read>>>;

tokio::task_local! {
    static RECORDER: Option<Reads>;
}

/// Recorders in effect in this process: while there is none, a read checks one counter and
/// nothing else.
static RECORDING: AtomicUsize = AtomicUsize::new(0);

struct Recording;

impl Recording {
    fn start() -> Self {
        RECORDING.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        RECORDING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `future` and returns, with its output, every read its `#[cached]` calls and
/// `get_or_set*` calls made, in the order they were answered (tasks started inside with
/// [`crate::spawn`] included).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use cache_runtime::testing::{Outcome, TestCache, Tier, record};
/// use cache_runtime::Ttl;
///
/// let test = TestCache::in_memory().expect("a test cache");
/// let key = test.cache().entity("product").expect("a valid name").key(&7u64);
/// let load = || async { Ok::<_, std::io::Error>("lamp".to_owned()) };
/// let ((), reads) = record(async {
///     test.cache().get_or_set(&key, Ttl::Short, load).await.expect("loaded");
///     test.cache().get_or_set(&key, Ttl::Short, load).await.expect("cached");
/// })
/// .await;
/// let answers: Vec<_> = reads.iter().map(|r| (r.tier, r.outcome)).collect();
/// assert_eq!(answers, [(Tier::Source, Outcome::Miss), (Tier::Redis, Outcome::Hit)]);
/// # }
/// ```
pub async fn record<F: Future>(future: F) -> (F::Output, Vec<Read>) {
    let reads = Reads::default();
    let _recording = Recording::start();
    let output = RECORDER.scope(Some(reads.clone()), future).await;
    let reads = std::mem::take(&mut *lock(&reads));
    (output, reads)
}

fn lock(reads: &Reads) -> std::sync::MutexGuard<'_, Vec<Read>> {
    reads
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Called for every read answered (see `cache::read_through`).
pub(crate) fn recorded(key: &CacheKey, tier: &'static str, outcome: &'static str) {
    if RECORDING.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Ok(Some(reads)) = RECORDER.try_with(Clone::clone) else {
        return;
    };
    let tier = match tier {
        "local" => Tier::Local,
        "redis" => Tier::Redis,
        _ => Tier::Source,
    };
    let outcome = match outcome {
        "hit" => Outcome::Hit,
        "coalesced" => Outcome::Coalesced,
        "stale" => Outcome::Stale,
        "fallback" => Outcome::Fallback,
        "error" => Outcome::Error,
        _ => Outcome::Miss,
    };
    lock(&reads).push(Read {
        entity: key.entity().name().to_owned(),
        key: key.as_str().to_owned(),
        tier,
        outcome,
    });
}

/// `future` with the caller's recorder, for a task [`crate::spawn`] starts.
pub(crate) fn carry_recorder<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let reads = RECORDER.try_with(Clone::clone).ok().flatten();
    RECORDER.scope(reads, future)
}
