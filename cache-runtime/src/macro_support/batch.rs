//! What `#[cached(batch)]` expands to: the function's ids read through together, the body
//! called with the ids still missing.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{KeyParts, ValueSite, prepare_batch};
use crate::CacheValue;
use crate::cache::BatchItem;

/// The shapes a batch function answers in: a map by id, or one `Option` per id in order.
pub trait BatchAnswer<I>: Sized {
    type Value: CacheValue + Clone;
    /// The values a call of the body answered for the ids `asked`, by id.
    fn into_found(self, asked: &[I]) -> HashMap<I, Self::Value>;
    /// The answer for `ids`, from each one's value.
    fn from_values(ids: &[I], values: Vec<Option<Self::Value>>) -> Self;
}

impl<I, T, S> BatchAnswer<I> for HashMap<I, T, S>
where
    I: Eq + Hash + Clone,
    T: CacheValue + Clone,
    S: BuildHasher + Default,
{
    type Value = T;

    fn into_found(self, _asked: &[I]) -> HashMap<I, T> {
        self.into_iter().collect()
    }

    fn from_values(ids: &[I], values: Vec<Option<T>>) -> Self {
        let found = ids.iter().zip(values);
        found
            .filter_map(|(id, value)| Some((id.clone(), value?)))
            .collect()
    }
}

static WARNED_LENGTH: AtomicBool = AtomicBool::new(false);

impl<I, T> BatchAnswer<I> for Vec<Option<T>>
where
    I: Eq + Hash + Clone,
    T: CacheValue + Clone,
{
    type Value = T;

    fn into_found(self, asked: &[I]) -> HashMap<I, T> {
        if self.len() != asked.len() && !WARNED_LENGTH.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                asked = asked.len(),
                answered = self.len(),
                "a batch function returned a Vec whose length is not its ids': the ids without a value are absent (logged once)"
            );
        }
        let found = asked.iter().zip(self);
        found
            .filter_map(|(id, value)| Some((id.clone(), value?)))
            .collect()
    }

    fn from_values(_ids: &[I], values: Vec<Option<T>>) -> Self {
        values
    }
}

/// `#[cached(batch)]` on a function returning `Result<A, E>`. A failed body fails the call
/// (nothing is cached for its ids).
pub async fn cached_batch_result<I, A, E, K, F, Fut>(
    site: &'static ValueSite,
    ids: &[I],
    key: K,
    mut body: F,
) -> Result<A, E>
where
    I: Clone + Eq + Hash,
    A: BatchAnswer<I>,
    K: Fn(&I) -> KeyParts,
    F: FnMut(Vec<I>) -> Fut,
    Fut: Future<Output = Result<A, E>>,
{
    let Some(batch) = prepare_batch(site, ids, key) else {
        return body(ids.to_vec()).await;
    };
    let load = |asked: Vec<I>| {
        let answer = body(asked.clone());
        async move { Ok(answer.await?.into_found(&asked)) }
    };
    let Batch {
        cache,
        items,
        refresh,
    } = batch;
    match cache
        .read_batch(items, &site.policy(refresh, &[]), load)
        .await
    {
        Ok(values) => Ok(A::from_values(ids, values)),
        Err(failed) => Err(failed.error),
    }
}

/// `#[cached(batch)]` on a function returning the answer itself: a body that cannot fail.
pub async fn cached_batch_value<I, A, K, F, Fut>(
    site: &'static ValueSite,
    ids: &[I],
    key: K,
    mut body: F,
) -> A
where
    I: Clone + Eq + Hash,
    A: BatchAnswer<I>,
    K: Fn(&I) -> KeyParts,
    F: FnMut(Vec<I>) -> Fut,
    Fut: Future<Output = A>,
{
    let infallible = |asked: Vec<I>| {
        let answer = body(asked);
        async move { Ok::<_, std::convert::Infallible>(answer.await) }
    };
    match cached_batch_result(site, ids, key, infallible).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    }
}

/// One batch call's cache and keys, and whether it refreshes (`refreshing(..)`).
pub(super) struct Batch<I> {
    pub(super) cache: crate::global::InEffect,
    pub(super) items: Vec<BatchItem<I>>,
    pub(super) refresh: bool,
}
