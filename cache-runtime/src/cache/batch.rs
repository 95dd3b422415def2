//! `get_or_set_many`: the entities a page, a search or a cart lists, read in one round trip,
//! the missing ones loaded by one call (the DataLoader pattern, safe across processes).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::read_through::{BatchItem, ManyRead};
use super::{Cache, Policy};
use crate::entity::Entity;
use crate::freshness::ReadOptions;
use crate::key::KeyPart;
use crate::metrics::bump;

/// A batch read whose loader failed: its error, and what the batch did get.
///
/// `values` holds, in the order of the ids asked for, the values found in the cache or loaded
/// by a call of the loader that succeeded (`None` for the others). Nothing is cached for the
/// ids whose load failed, and other callers waiting for them load them themselves.
pub struct BatchError<T, E> {
    pub error: E,
    pub values: Vec<Option<T>>,
}

impl<T, E> BatchError<T, E> {
    /// The loader's error alone.
    pub fn into_error(self) -> E {
        self.error
    }
}

impl<T, E: fmt::Debug> fmt::Debug for BatchError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let found = self.values.iter().filter(|value| value.is_some()).count();
        f.debug_struct("BatchError")
            .field("error", &self.error)
            .field("found", &found)
            .field("of", &self.values.len())
            .finish()
    }
}

impl<T, E: fmt::Display> fmt::Display for BatchError<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch loader failed: {}", self.error)
    }
}

impl<T, E: std::error::Error + 'static> std::error::Error for BatchError<T, E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl Cache {
    /// Cache-aside for many ids of one entity at once: the value of each id (`None`: the
    /// loader did not return it), in the order of `ids`.
    ///
    /// The in-process tier is read first (where `options` uses it), then Redis, in one round
    /// trip per 500 keys. `loader` is called with the ids still missing, each once however
    /// often `ids` repeats it, and answers the values it found; ids it leaves out are absent
    /// (not cached), ids it was not asked for are ignored (with a warning). Each key keeps the
    /// guarantees of [`Self::get_or_set_with`]: an id already being loaded in this process or
    /// under another process's lease is waited for, not loaded again; a value loaded while the
    /// id was written or invalidated is not stored; TTL jitter and metrics are per key; Redis
    /// trouble never fails the call.
    ///
    /// The loader is called once, when every missing key is either waiting for it or waiting
    /// for someone else's load (waiting for those first could wait for ever on a batch that
    /// waits for this one). It is called again only for ids whose awaited load ended without a
    /// value (that loader failed), with all of them at once. Refreshes of stale values (with
    /// `stale` or `early_refresh`) run in the caller, in the same loader call.
    ///
    /// If a loader call fails, the error comes back in a [`BatchError`] with every value the
    /// batch got; the ids of that call are `None` there and nothing is cached for them. An id
    /// with an old value at hand (`stale`) is answered with it instead (fail-safe), as in a
    /// single read; when every id of the failed call was, the call succeeds.
    ///
    /// ```no_run
    /// # async fn demo(cache: cache_runtime::Cache) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::collections::HashMap;
    /// use cache_runtime::{ReadOptions, Ttl};
    ///
    /// let products = cache.entity("product")?;
    /// let names: Vec<Option<String>> = cache
    ///     .get_or_set_many(&products, &[1u64, 2, 3], ReadOptions::new(Ttl::Medium), |ids| async move {
    ///         // One query for every id the cache did not have.
    ///         Ok::<_, std::io::Error>(ids.into_iter().map(|id| (id, format!("product {id}"))).collect::<HashMap<_, _>>())
    ///     })
    ///     .await?;
    /// # let _ = names; Ok(()) }
    /// ```
    pub async fn get_or_set_many<I, T, E, F, Fut>(
        &self,
        entity: &Entity,
        ids: &[I],
        options: ReadOptions,
        loader: F,
    ) -> Result<Vec<Option<T>>, BatchError<T, E>>
    where
        I: KeyPart + Clone + Eq + Hash,
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Vec<I>) -> Fut,
        Fut: Future<Output = Result<HashMap<I, T>, E>>,
    {
        let items = ids.iter().map(|id| BatchItem {
            id: id.clone(),
            key: entity.key(id),
            tags: Vec::new(),
        });
        self.read_batch(items.collect(), &Policy::new(options), loader)
            .await
    }

    /// Reads `items` through (a repeated key loaded once), answering in their order.
    pub(crate) async fn read_batch<I, T, E, F, Fut>(
        &self,
        items: Vec<BatchItem<I>>,
        policy: &Policy<'_>,
        loader: F,
    ) -> Result<Vec<Option<T>>, BatchError<T, E>>
    where
        I: Clone + Eq + Hash,
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Vec<I>) -> Fut,
        Fut: Future<Output = Result<HashMap<I, T>, E>>,
    {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if self.is_disabled() {
            return read_disabled(&items, loader).await;
        }
        let ManyRead { values, error } = self.read_many(&items, policy, loader).await;
        match error {
            None => Ok(values),
            Some(error) => Err(BatchError { error, values }),
        }
    }
}

/// A batch with caching off: one loader call with every id (each once), each counted as a miss.
async fn read_disabled<I, T, E, F, Fut>(
    items: &[BatchItem<I>],
    mut loader: F,
) -> Result<Vec<Option<T>>, BatchError<T, E>>
where
    I: Clone + Eq + Hash,
    T: Clone,
    F: FnMut(Vec<I>) -> Fut,
    Fut: Future<Output = Result<HashMap<I, T>, E>>,
{
    let mut asked = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        bump(&item.key.entity().counters().misses);
        super::read_through::tell_recorder(&item.key, "source", "miss");
        if seen.insert(&item.id) {
            asked.push(item.id.clone());
        }
    }
    let counters = items[0].key.entity().counters();
    bump(&counters.loader_calls);
    match loader(asked).await {
        Ok(loaded) => Ok(items
            .iter()
            .map(|item| loaded.get(&item.id).cloned())
            .collect()),
        Err(error) => {
            bump(&counters.loader_errors);
            let values = items.iter().map(|_| None).collect();
            Err(BatchError { error, values })
        }
    }
}
