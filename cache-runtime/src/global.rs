//! The process-wide cache the macros use, a scoped override, and per-call modes.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cache::Cache;

static GLOBAL: OnceLock<Cache> = OnceLock::new();

tokio::task_local! {
    static SCOPED: Cache;
    static MODE: Mode;
}

/// Test scopes (`testing::TestCache::run`) live in this process: while there is none, a call
/// outside every scope costs one load of this counter.
static TEST_SCOPES: AtomicUsize = AtomicUsize::new(0);
/// Those of them on multi-thread runtimes, whose tasks may run on any worker thread.
#[cfg(feature = "testing")]
static SHARED_TEST_SCOPES: AtomicUsize = AtomicUsize::new(0);

#[cfg(feature = "testing")]
thread_local! {
    /// Those of them on the current-thread runtime of this thread (a `#[tokio::test]`): its
    /// tasks, escaped ones included, all run on this thread.
    static THREAD_TEST_SCOPES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(feature = "testing")]
fn on_a_current_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// Counts a test scope while it lives: on its thread if its runtime is a current-thread one
/// (so parallel tests, each on a thread of its own, do not see each other's), else for every
/// multi-thread runtime.
#[cfg(feature = "testing")]
struct LiveTestScope {
    on_this_thread: bool,
}

#[cfg(feature = "testing")]
impl LiveTestScope {
    fn new() -> Self {
        let on_this_thread = on_a_current_thread_runtime();
        match on_this_thread {
            true => THREAD_TEST_SCOPES.with(|n| n.set(n.get() + 1)),
            false => {
                SHARED_TEST_SCOPES.fetch_add(1, Ordering::Relaxed);
            }
        }
        TEST_SCOPES.fetch_add(1, Ordering::Relaxed);
        Self { on_this_thread }
    }
}

#[cfg(feature = "testing")]
impl Drop for LiveTestScope {
    fn drop(&mut self) {
        match self.on_this_thread {
            true => THREAD_TEST_SCOPES.with(|n| n.set(n.get().saturating_sub(1))),
            false => {
                SHARED_TEST_SCOPES.fetch_sub(1, Ordering::Relaxed);
            }
        }
        TEST_SCOPES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `future` with `cache` in effect, as a test's scope: calls outside every scope on the
/// same runtime while it lives are warned about.
#[cfg(feature = "testing")]
pub(crate) async fn with_test_cache<F: Future>(cache: Cache, future: F) -> F::Output {
    let _live = LiveTestScope::new();
    SCOPED.scope(cache, future).await
}

/// Whether a call that found no scope escaped a test's: one lives on this thread's
/// current-thread runtime, or this is a multi-thread runtime and one lives on any.
pub(crate) fn escaped_a_test_scope() -> bool {
    if TEST_SCOPES.load(Ordering::Relaxed) == 0 {
        return false;
    }
    #[cfg(feature = "testing")]
    return match on_a_current_thread_runtime() {
        true => THREAD_TEST_SCOPES.with(std::cell::Cell::get) > 0,
        false => SHARED_TEST_SCOPES.load(Ordering::Relaxed) > 0,
    };
    #[cfg(not(feature = "testing"))]
    false
}

/// [`tokio::spawn`], with the task running in the caller's cache scope ([`with_cache`], a
/// test's) and mode ([`uncached`], [`refreshing`]): task-locals do not follow a spawned task by
/// themselves, so without this the task's `#[cached]` calls would go to the installed cache.
/// Must be called inside a Tokio runtime.
///
/// ```no_run
/// # async fn product(id: u64) -> u64 { id }
/// # async fn demo(cache: cache_runtime::Cache) {
/// cache_runtime::with_cache(cache, async {
///     let task = cache_runtime::spawn(product(42)); // reads through `cache`
///     task.await.expect("the task");
/// })
/// .await;
/// # }
/// ```
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_in_scope(MODE.scope(mode(), future))
}

/// [`spawn`] without the mode: the task runs in the caller's cache scope (and recorder) in the
/// normal mode (a background refresh started inside `refreshing(..)` is not itself forced).
pub(crate) fn spawn_in_scope<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(feature = "testing")]
    let future = crate::testing::carry_recorder(future);
    match SCOPED.try_with(Cache::clone) {
        Ok(cache) => tokio::spawn(SCOPED.scope(cache, future)),
        Err(_) => tokio::spawn(future),
    }
}

/// How `#[cached]` functions behave inside [`uncached`] and [`refreshing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal,
    /// Run the undecorated body: no read, no write.
    Bypass,
    /// Skip the read, run the body, overwrite the cached value.
    Refresh,
}

/// A cache was installed already; the rejected one is handed back.
#[derive(Debug, thiserror::Error)]
#[error(
    "a global cache is installed already; install it once at start-up, or use `with_cache` for a scoped one"
)]
pub struct AlreadyInstalled(pub Cache);

/// Installs `cache` as the process-wide cache. A second install is an error, never a replace.
pub fn install(cache: Cache) -> Result<(), AlreadyInstalled> {
    GLOBAL.set(cache).map_err(AlreadyInstalled)
}

/// The cache in effect: the innermost [`with_cache`] scope's, else the installed one.
pub fn current() -> Option<Cache> {
    SCOPED
        .try_with(Cache::clone)
        .ok()
        .or_else(|| GLOBAL.get().cloned())
}

/// The cache reads should go through: [`current`], except inside [`uncached`], where
/// `#[cached]` functions skip the cache too. For code that reads with the explicit API
/// (`Cache::get_many`) beside the macros.
pub fn current_for_reads() -> Option<Cache> {
    match mode() {
        Mode::Bypass => None,
        Mode::Normal | Mode::Refresh => current(),
    }
}

/// The cache in effect, for the macros: the installed one is borrowed, not cloned, so a call
/// touches no reference count shared with every other thread.
#[derive(Debug)]
pub(crate) enum InEffect {
    Installed(&'static Cache),
    Scoped(Cache),
}

impl std::ops::Deref for InEffect {
    type Target = Cache;

    fn deref(&self) -> &Cache {
        match self {
            Self::Installed(cache) => cache,
            Self::Scoped(cache) => cache,
        }
    }
}

pub(crate) fn in_effect() -> Option<InEffect> {
    match SCOPED.try_with(Cache::clone) {
        Ok(scoped) => Some(InEffect::Scoped(scoped)),
        Err(_) => GLOBAL.get().map(InEffect::Installed),
    }
}

/// Runs `future` with `cache` in effect instead of the global one (tests, multi-tenant programs).
pub async fn with_cache<F: Future>(cache: Cache, future: F) -> F::Output {
    SCOPED.scope(cache, future).await
}

pub(crate) fn mode() -> Mode {
    MODE.try_with(|mode| *mode).unwrap_or(Mode::Normal)
}

/// Runs `future` with every `#[cached]` function in it calling its undecorated body: no cache
/// read, no cache write. `#[invalidates]` and `#[cache_put]` still apply.
///
/// ```no_run
/// # async fn product(_id: u64) -> Option<String> { None }
/// # async fn demo() {
/// let fresh_from_the_database = cache_runtime::uncached(product(42)).await;
/// println!("{fresh_from_the_database:?}");
/// # }
/// ```
pub async fn uncached<F: Future>(future: F) -> F::Output {
    MODE.scope(Mode::Bypass, future).await
}

/// Runs `future` with every `#[cached]` function in it skipping the cache read, calling its
/// body, and overwriting the cached value: a forced refresh.
pub async fn refreshing<F: Future>(future: F) -> F::Output {
    MODE.scope(Mode::Refresh, future).await
}
