//! A hard bound on the source: a loader that takes longer fails with [`LoadTimedOut`], which the
//! caller's error type takes in through `From` (so the bound is opt-in: without the conversion
//! it does not compile). With a stale value at hand, fail-safe serves it instead.

use std::future::Future;
use std::time::Duration;

/// The source did not answer within the load timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the source did not answer within {after:?}")]
pub struct LoadTimedOut {
    /// The bound that was exceeded.
    pub after: Duration,
}

/// `loader`, failing with `E::from(LoadTimedOut)` once `limit` has passed; the loader is
/// dropped (cancelled) then.
///
/// ```no_run
/// # use std::time::Duration;
/// # #[derive(Debug)] struct DbError;
/// # impl From<cache_runtime::LoadTimedOut> for DbError { fn from(_: cache_runtime::LoadTimedOut) -> Self { DbError } }
/// # async fn query() -> Result<u32, DbError> { Ok(1) }
/// # async fn demo(cache: cache_runtime::Cache) -> Result<(), Box<dyn std::error::Error>> {
/// let key = cache.entity("report")?.key("daily");
/// let report = cache
///     .get_or_set(&key, cache_runtime::Ttl::Long, || {
///         cache_runtime::with_load_timeout(query(), Duration::from_secs(2))
///     })
///     .await;
/// println!("{report:?}");
/// # Ok(()) }
/// ```
pub async fn with_load_timeout<T, E, F>(loader: F, limit: Duration) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: From<LoadTimedOut>,
{
    match tokio::time::timeout(limit, loader).await {
        Ok(result) => result,
        Err(_) => Err(E::from(LoadTimedOut { after: limit })),
    }
}
