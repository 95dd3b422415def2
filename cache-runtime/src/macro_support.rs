//! What the expansions of `#[cached]`, `#[invalidates]` and `#[cache_put]` call. Reached through
//! `cache_runtime::__private`: hidden, and not covered by semver.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

mod batch;

pub use batch::{BatchAnswer, cached_batch_result, cached_batch_value};

use crate::CacheValue;
use crate::cache::{BatchItem, Cache, Optional, Plain, Policy, Stored, WriteStart, spawn_refresh};
pub use crate::cache::{RefreshJob, Spawner};
use crate::entity::{CacheKey, Entity};
use crate::freshness::ReadOptions;
use crate::global::{self, InEffect, Mode};
use crate::key::KeyPart;
pub use crate::probes::{KeepErrors, Probe, ShareClonedErrors};
pub use crate::share::ErrorSharing;
use crate::ttl::Ttl;

/// Builds an escaped id or variant from a key template: literal text as written, interpolated
/// values escaped.
#[derive(Debug, Default)]
#[must_use]
pub struct KeyWriter(String);

/// Room for a whole key: an id is rendered into the buffer that then becomes its key, the
/// entity prefix inserted in front without another allocation.
const KEY_CAPACITY: usize = 64;

impl KeyWriter {
    pub fn new() -> Self {
        Self(String::with_capacity(KEY_CAPACITY))
    }

    /// Literal template text (checked at compile time to need no escaping).
    pub fn literal(mut self, text: &'static str) -> Self {
        self.0.push_str(text);
        self
    }

    /// An interpolated value.
    pub fn value<T: KeyPart + ?Sized>(mut self, value: &T) -> Self {
        value.append_to(&mut self.0);
        self
    }

    pub fn finish(self) -> String {
        self.0
    }
}

/// The escaped id, optional variant and tags of one call's key.
#[derive(Debug)]
pub struct KeyParts {
    pub id: String,
    pub variant: Option<String>,
    pub tags: Vec<String>,
}

/// The entity an annotated function works on, resolved once per cache (so a call does not look
/// the entity up by name). `#[invalidates]` needs only this.
#[derive(Debug)]
pub struct EntitySite {
    name: &'static str,
    version: Option<u32>,
    /// The annotated function's path, named in warnings.
    function: &'static str,
    /// Whether a call escaping a test's scope was warned about already (once per function).
    escape_warned: AtomicBool,
    /// For the first cache seen (nearly always the only one): read without a lock.
    first: OnceLock<(u64, Entity)>,
    /// For any other cache (`with_cache` scopes): the one used last.
    other: RwLock<Option<(u64, Entity)>>,
}

impl EntitySite {
    pub const fn new(name: &'static str, version: Option<u32>, function: &'static str) -> Self {
        Self {
            name,
            version,
            function,
            escape_warned: AtomicBool::new(false),
            first: OnceLock::new(),
            other: RwLock::new(None),
        }
    }

    /// The key of `id` and `variant` under the entity for `cache`; the usual case borrows the
    /// entity from this (static) site, touching no reference count.
    fn key(&'static self, cache: &Cache, id: String, variant: Option<&str>) -> Option<CacheKey> {
        match self
            .first
            .get()
            .filter(|(cache_id, _)| *cache_id == cache.id())
        {
            Some((_, entity)) => Some(entity.static_key_from_escaped(id, variant)),
            None => self
                .entity(cache)
                .map(|entity| entity.key_from_escaped(&id, variant)),
        }
    }

    fn entity(&self, cache: &Cache) -> Option<Entity> {
        if let Some((_, entity)) = self.first.get().filter(|(id, _)| *id == cache.id()) {
            return Some(entity.clone());
        }
        let other = self
            .other
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, entity)) = other.as_ref().filter(|(id, _)| *id == cache.id()) {
            return Some(entity.clone());
        }
        drop(other);
        let version = self.version.unwrap_or(cache.config().version());
        match cache.entity_at_version(self.name, version) {
            Ok(entity) => {
                if self.first.set((cache.id(), entity.clone())).is_err() {
                    *self
                        .other
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some((cache.id(), entity.clone()));
                }
                Some(entity)
            }
            Err(error) => {
                tracing::warn!(%error, "invalid entity; running uncached");
                None
            }
        }
    }
}

/// Where `#[cached]` and `#[cache_put]` keep values: the entity, and how its values are read
/// and written.
#[derive(Debug)]
pub struct ValueSite {
    entity: EntitySite,
    options: ReadOptions,
    negative_ttl: Option<Ttl>,
}

impl ValueSite {
    pub const fn new(entity: EntitySite, options: ReadOptions, negative_ttl: Option<Ttl>) -> Self {
        Self {
            entity,
            options,
            negative_ttl,
        }
    }

    fn policy<'a>(&self, refresh: bool, tags: &'a [String]) -> Policy<'a> {
        Policy {
            options: self.options,
            negative_ttl: self.negative_ttl,
            refresh,
            tags,
            known: None,
            lease: None,
        }
    }
}

/// What one cached call works with once the cache, the entity and the mode are known.
struct Prepared {
    cache: InEffect,
    key: CacheKey,
    tags: Vec<String>,
    /// `refreshing(…)`: load even when a value is cached.
    refresh: bool,
}

impl Prepared {
    fn policy<'a>(&'a self, site: &ValueSite) -> Policy<'a> {
        site.policy(self.refresh, &self.tags)
    }
}

static WARNED_NOT_INSTALLED: AtomicBool = AtomicBool::new(false);
/// For `#[invalidates(tags = …)]` without an entity, which has no site.
static TAGS_ESCAPE_WARNED: AtomicBool = AtomicBool::new(false);

/// The cache a macro call goes through: the scoped one, else the installed one. Warns once
/// when there is none (for reads and writes: `#[invalidates]` has nothing to invalidate), and
/// once per function when a test's scope is live but the call is outside it: the call then
/// reads or writes another test's cache, or none, and a test passes or fails for the wrong
/// reason.
fn cache_for(site: Option<&EntitySite>, warn_not_installed: bool) -> Option<InEffect> {
    let cache = global::in_effect();
    if !matches!(cache, Some(InEffect::Scoped(_))) && global::escaped_a_test_scope() {
        let (function, warned) = match site {
            Some(site) => (site.function, &site.escape_warned),
            None => ("an #[invalidates(tags = …)] function", &TAGS_ESCAPE_WARNED),
        };
        if !warned.swap(true, Ordering::Relaxed) {
            let went_to = match cache {
                Some(_) => "the installed cache",
                None => "no cache",
            };
            tracing::warn!(
                function,
                "`{function}` ran outside its test's cache scope, so it used {went_to}: start tasks with `cache_runtime::spawn` (not `tokio::spawn`) to carry the scope"
            );
        }
    }
    if cache.is_none() && warn_not_installed && !WARNED_NOT_INSTALLED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            "no cache installed (cache_runtime::install): #[cached] functions run uncached"
        );
    }
    cache
}

/// The cache, key and tags for a read, or `None` to run the body uncached.
fn prepare(site: &'static ValueSite, key: Option<KeyParts>) -> Option<Prepared> {
    let refresh = match global::mode() {
        Mode::Normal => false,
        Mode::Refresh => true,
        Mode::Bypass => return None,
    };
    let prepared = prepare_write(site, key)?;
    Some(Prepared {
        refresh,
        ..prepared
    })
}

/// The cache, key and tags for a write, which applies in every mode (`uncached` only bypasses
/// reads).
fn prepare_write(site: &'static ValueSite, key: Option<KeyParts>) -> Option<Prepared> {
    let key = key?;
    let cache = cache_for(Some(&site.entity), true)?;
    let cache_key = site.entity.key(&cache, key.id, key.variant.as_deref())?;
    Some(Prepared {
        cache,
        key: cache_key,
        tags: key.tags,
        refresh: false,
    })
}

/// The cache and keys for a batch read, or `None` to run the body uncached.
fn prepare_batch<I: Clone>(
    site: &'static ValueSite,
    ids: &[I],
    key: impl Fn(&I) -> KeyParts,
) -> Option<batch::Batch<I>> {
    let refresh = match global::mode() {
        Mode::Normal => false,
        Mode::Refresh => true,
        Mode::Bypass => return None,
    };
    let cache = cache_for(Some(&site.entity), true)?;
    let items = ids.iter().map(|id| {
        let parts = key(id);
        let key = site
            .entity
            .key(&cache, parts.id, parts.variant.as_deref())?;
        Some(BatchItem {
            id: id.clone(),
            key,
            tags: parts.tags,
        })
    });
    let items = items.collect::<Option<Vec<_>>>()?;
    Some(batch::Batch {
        cache,
        items,
        refresh,
    })
}

fn never<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

/// Names the cached value's type in the user's signature: a type that cannot be cached is
/// reported there, before the bounds of the calls below name it inside this crate.
pub fn cache_value<T: CacheValue>() {}

/// `stale` or `early_refresh` on a function whose inputs are all owned: refreshes of a value
/// due for one run in a background task, so the body must be `Send + 'static`. The bound's
/// error names the value that is not `Send`; the comment on it is shown with the error.
pub fn background_refresh<F, T, E>(_body: &F) -> Option<Spawner<F>>
where
    F: Future<Output = Result<T, E>> + Send + 'static, // not `Send`? add `refresh_in_caller`
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
{
    Some(spawn_refresh::<F, T, E>)
}

/// `#[cached]` on a function returning `Result<T, E>`: caches `Ok` only; concurrent callers
/// share an error if `errors` says how. With `stale` or `early_refresh`, a value due for
/// refresh is returned at once and, when `spawner` is given, one background task refreshes it;
/// without one, the caller that claims the refresh runs it.
pub async fn cached_result<T, E, F>(
    site: &'static ValueSite,
    key: Option<KeyParts>,
    errors: Option<ErrorSharing<E>>,
    spawner: Option<Spawner<F>>,
    body: F,
) -> Result<T, E>
where
    T: CacheValue,
    F: Future<Output = Result<T, E>>,
{
    let Some(call) = prepare(site, key) else {
        return body.await;
    };
    call.cache
        .read_or_refresh(&call.key, &call.policy(site), errors, spawner, body)
        .await
}

/// `#[cached]` on a function returning `Option<T>`: caches `Some`, and `None` with `cache_none`.
pub async fn cached_option<T, F>(
    site: &'static ValueSite,
    key: Option<KeyParts>,
    body: F,
) -> Option<T>
where
    T: CacheValue,
    F: Future<Output = Option<T>>,
{
    let Some(call) = prepare(site, key) else {
        return body.await;
    };
    let loader = async { Ok::<_, Infallible>(Optional(body.await)) };
    never(
        call.cache
            .read_through(&call.key, &call.policy(site), None, loader)
            .await,
    )
    .0
}

/// `#[cached]` on a function returning any other `T`.
pub async fn cached_value<T, F>(site: &'static ValueSite, key: Option<KeyParts>, body: F) -> T
where
    T: CacheValue,
    F: Future<Output = T>,
{
    let Some(call) = prepare(site, key) else {
        return body.await;
    };
    let loader = async { Ok::<_, Infallible>(Plain(body.await)) };
    never(
        call.cache
            .read_through(&call.key, &call.policy(site), None, loader)
            .await,
    )
    .0
}

/// Something a write-through function returned: the value to store, if any.
pub trait PutValue {
    type Value: Serialize;
    fn put_value(&self) -> Option<&Self::Value>;
}

/// `#[cache_put]` on a `Result<T, E>` function.
#[derive(Debug)]
pub struct PutResult<'a, T, E>(pub &'a Result<T, E>);
/// `#[cache_put]` on an `Option<T>` function.
#[derive(Debug)]
pub struct PutOption<'a, T>(pub &'a Option<T>);
/// `#[cache_put]` on a function returning any other `T`.
#[derive(Debug)]
pub struct PutPlain<'a, T>(pub &'a T);

impl<T: Serialize, E> PutValue for PutResult<'_, T, E> {
    type Value = T;
    fn put_value(&self) -> Option<&T> {
        self.0.as_ref().ok()
    }
}

impl<T: Serialize> PutValue for PutOption<'_, T> {
    type Value = T;
    fn put_value(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<T: Serialize> PutValue for PutPlain<'_, T> {
    type Value = T;
    fn put_value(&self) -> Option<&T> {
        Some(self.0)
    }
}

/// `#[cache_put]` before its body runs: where the value goes, and the stamp it will carry,
/// taken now so that an invalidation made while the body runs covers the value.
#[derive(Debug)]
pub struct PutStart {
    cache: InEffect,
    key: CacheKey,
    tags: Vec<String>,
    start: WriteStart,
}

/// `#[cache_put]`, before the body: `None` when nothing will be written (no cache installed).
pub async fn begin_put(site: &'static ValueSite, key: Option<KeyParts>) -> Option<PutStart> {
    let Prepared {
        cache, key, tags, ..
    } = prepare_write(site, key)?;
    if cache.is_disabled() {
        return None;
    }
    let grace = site.options.stale.unwrap_or_default();
    let start = cache
        .begin_write(&key, &tags, site.options.ttl, grace)
        .await;
    Some(PutStart {
        cache,
        key,
        tags,
        start,
    })
}

/// `#[cache_put]`, after the body: stores what it returned (never changes the result), with
/// the `revision` given by `revision = <expr>`, if any.
pub async fn put<P: PutValue>(start: Option<PutStart>, returned: P, revision: Option<u64>) {
    if let (Some(start), Some(value)) = (start, returned.put_value()) {
        write_put(start, value, revision).await;
    }
}

/// `#[cache_put(revision = <expr>)]`: the expression's value, any unsigned integer up to 64 bits.
pub fn revision<R: Into<u64>>(revision: R) -> u64 {
    revision.into()
}

/// `#[cache_put(revision = |value| …)]`, after the body: the revision is read off the value.
pub async fn put_ordered_by<P, R>(start: Option<PutStart>, returned: P, revision: R)
where
    P: PutValue,
    R: FnOnce(&P::Value) -> u64,
{
    if let (Some(start), Some(value)) = (start, returned.put_value()) {
        write_put(start, value, Some(revision(value))).await;
    }
}

async fn write_put<T: Serialize + ?Sized>(start: PutStart, value: &T, revision: Option<u64>) {
    let PutStart {
        cache,
        key,
        tags,
        start,
    } = start;
    let result = cache
        .finish_write(&key, Stored::Value(value), start, &tags, revision)
        .await;
    if let Err(error) = result {
        if error.is_connection_class() {
            // Kept for replay as an invalidation of the key; the backlog is logged there.
            tracing::debug!(key = key.as_str(), %error, "write-through failed");
        } else {
            tracing::warn!(key = key.as_str(), %error, "write-through failed");
        }
    }
}

/// What an `#[invalidates]` attribute removes.
#[derive(Debug, Clone)]
pub enum Target {
    /// One id with all its variants.
    Id(String),
    /// Every key of the entity.
    All,
    /// Every key carrying one of these (rendered) tags, whatever its entity.
    Tags(Vec<String>),
}

/// `#[invalidates]`: removes the target; failures are logged, never returned.
pub async fn invalidate(site: &EntitySite, target: Option<Target>) {
    let Some(target) = target else { return };
    let Some(cache) = cache_for(Some(site), false) else {
        return;
    };
    let Some(entity) = site.entity(&cache) else {
        return;
    };
    let result = match &target {
        Target::Id(id) => cache.invalidate_escaped_id(&entity, id).await,
        Target::All => cache.invalidate_entity(&entity).await,
        Target::Tags(tags) => {
            let mut result = Ok(0);
            for tag in tags {
                result = result.and(cache.invalidate_tag(tag).await);
            }
            result
        }
    };
    if let Err(error) = result {
        // The replay queue logs the backlog; one line per failure is enough.
        tracing::debug!(entity = entity.name(), ?target, %error, "invalidation failed (kept for replay)");
    }
}

/// `#[invalidates(tags = [...])]` without an entity: every value carrying one of the tags,
/// whatever its entity (tags span entities and versions).
pub async fn invalidate_tags(tags: Option<Vec<String>>) {
    let Some(tags) = tags else { return };
    let Some(cache) = cache_for(None, false) else {
        return;
    };
    for tag in &tags {
        if let Err(error) = cache.invalidate_tag(tag).await {
            // The replay queue logs the backlog; one line per failure is enough.
            tracing::debug!(tag, %error, "invalidation failed (kept for replay)");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    static SITE: ValueSite = ValueSite::new(
        EntitySite::new("product", None, "tests::product"),
        ReadOptions::new(Ttl::Short),
        None,
    );

    fn key() -> Option<KeyParts> {
        Some(KeyParts {
            id: KeyWriter::new().value(&42u64).finish(),
            variant: None,
            tags: Vec::new(),
        })
    }

    // No unit test in this crate installs a global cache, so none is in effect here.
    #[tokio::test]
    async fn without_an_installed_cache_the_body_runs_uncached_with_one_warning() {
        let runs = AtomicUsize::new(0);
        for _ in 0..3 {
            let value = cached_value(&SITE, key(), async {
                runs.fetch_add(1, Ordering::SeqCst);
                7
            })
            .await;
            assert_eq!(value, 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(WARNED_NOT_INSTALLED.load(Ordering::Relaxed));
    }

    #[test]
    fn key_writer_keeps_literals_and_escapes_values() {
        let id = KeyWriter::new()
            .value("a:b")
            .literal(":")
            .value(&7u8)
            .literal("p")
            .finish();
        assert_eq!(id, "a%3Ab:7p");
    }
}
