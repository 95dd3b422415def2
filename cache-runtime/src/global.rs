//! The process-wide cache the macros use, and a scoped override.

use std::future::Future;
use std::sync::OnceLock;

use crate::cache::Cache;

static GLOBAL: OnceLock<Cache> = OnceLock::new();

tokio::task_local! {
    static SCOPED: Cache;
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

/// Runs `future` with `cache` in effect instead of the global one (tests, multi-tenant programs).
pub async fn with_cache<F: Future>(cache: Cache, future: F) -> F::Output {
    SCOPED.scope(cache, future).await
}
