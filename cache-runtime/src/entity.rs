//! Entities and the keys built from them.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;

use crate::key::{EntityPrefix, KeyPart};
use crate::marks::MarkCell;
use crate::metrics::{Counters, EntityMetrics, ShardedCounters};

/// One kind of cached value (`product`, `product_list`): its key namespace and its counters.
///
/// Get it once from [`Cache::entity`](crate::Cache::entity) and keep it; clones are cheap.
#[derive(Clone)]
pub struct Entity {
    inner: Arc<EntityInner>,
}

/// Aligned to a cache line pair so that the `Arc`'s reference counts, changed by every call
/// that builds a key, sit on other lines than the fields every call reads.
#[repr(align(128))]
struct EntityInner {
    prefix: EntityPrefix,
    counters: ShardedCounters,
    /// This instance's knowledge of the entity's invalidation mark.
    mark: Arc<MarkCell>,
    mark_key: String,
    /// Where writes and deletions of this entity's keys are announced (`<prefix>%keys`), to the
    /// instances that may hold them in process only.
    keys_channel: String,
    /// Whether this instance hears that channel (see [`crate::cache::key_events`]).
    hearing: AtomicU8,
}

impl Entity {
    pub(crate) fn new(prefix: EntityPrefix, mark: Arc<MarkCell>) -> Self {
        Self {
            inner: Arc::new(EntityInner {
                mark_key: prefix.mark_key(),
                keys_channel: format!("{}%keys", prefix.pattern().trim_end_matches('*')),
                hearing: AtomicU8::new(0),
                prefix,
                counters: ShardedCounters::default(),
                mark,
            }),
        }
    }

    pub(crate) fn mark(&self) -> &MarkCell {
        &self.inner.mark
    }

    pub(crate) fn mark_key(&self) -> &str {
        &self.inner.mark_key
    }

    /// The channel announcing writes and deletions of this entity's keys.
    pub(crate) fn keys_channel(&self) -> &str {
        &self.inner.keys_channel
    }

    pub(crate) fn hearing(&self) -> &AtomicU8 {
        &self.inner.hearing
    }

    /// The entity name.
    pub fn name(&self) -> &str {
        self.inner.prefix.entity()
    }

    /// The key of `id`: `{app}:v{N}:{entity}:{id}`, the id escaped.
    pub fn key(&self, id: &(impl KeyPart + ?Sized)) -> CacheKey {
        CacheKey {
            key: self.inner.prefix.key(id),
            variant_at: None,
            entity: EntityRef::Owned(self.clone()),
        }
    }

    /// The key of `id` with `variant`: `{app}:v{N}:{entity}:{id}:{variant}`.
    pub fn variant_key(
        &self,
        id: &(impl KeyPart + ?Sized),
        variant: &(impl KeyPart + ?Sized),
    ) -> CacheKey {
        let (key, variant_at) = self.inner.prefix.variant_key(id, variant);
        CacheKey {
            key,
            variant_at: Some(variant_at),
            entity: EntityRef::Owned(self.clone()),
        }
    }

    /// The key of an already escaped id and variant.
    pub(crate) fn key_from_escaped(&self, id: &str, variant: Option<&str>) -> CacheKey {
        let (key, variant_at) = self.inner.prefix.key_from_escaped(id, variant);
        CacheKey {
            key,
            variant_at,
            entity: EntityRef::Owned(self.clone()),
        }
    }

    /// [`Self::key_from_escaped`] for an entity that lives as long as the program (an
    /// annotated function's, kept in its static site): the key borrows it, so building and
    /// dropping a key touches no reference count the cores share.
    pub(crate) fn static_key_from_escaped(
        &'static self,
        id: String,
        variant: Option<&str>,
    ) -> CacheKey {
        let (key, variant_at) = self.inner.prefix.key_from_escaped_id(id, variant);
        CacheKey {
            key,
            variant_at,
            entity: EntityRef::Static(self),
        }
    }

    /// The glob matching every key of this entity.
    pub fn pattern(&self) -> String {
        self.inner.prefix.pattern()
    }

    /// The glob matching every variant of `id`.
    pub fn variants_pattern(&self, id: &(impl KeyPart + ?Sized)) -> String {
        self.inner.prefix.variants_pattern(id)
    }

    /// A snapshot of this entity's counters (since [`Self::reset_metrics`], if called).
    pub fn metrics(&self) -> EntityMetrics {
        self.inner
            .counters
            .since_reset(self.name(), self.inner.prefix.version())
    }

    /// The counters since the start, whatever the resets: what the periodic log and the
    /// exporter report.
    pub(crate) fn lifetime_metrics(&self) -> EntityMetrics {
        self.inner
            .counters
            .snapshot(self.name(), self.inner.prefix.version())
    }

    /// Sets what [`Self::metrics`] answers back to zero (tests: "loaded once since here").
    /// The periodic metrics log and the exported counters are not affected.
    pub fn reset_metrics(&self) {
        self.inner
            .counters
            .reset(self.name(), self.inner.prefix.version());
    }

    pub(crate) fn prefix(&self) -> &EntityPrefix {
        &self.inner.prefix
    }

    /// The calling thread's shard of this entity's counters.
    pub(crate) fn counters(&self) -> &Counters {
        self.inner.counters.local()
    }

    /// Whether the decode-failure warning was logged for this entity already.
    pub(crate) fn decode_failure_logged(&self) -> &std::sync::atomic::AtomicBool {
        &self.inner.counters.decode_failure_logged
    }

    /// Whether the oversize warning was logged for this entity already.
    pub(crate) fn oversize_logged(&self) -> &std::sync::atomic::AtomicBool {
        &self.inner.counters.oversize_logged
    }
}

impl fmt::Debug for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Entity").field(&self.inner.prefix).finish()
    }
}

/// The lease key of `key` (see [`CacheKey::lease_key`]).
pub(crate) fn lease_key(key: &str) -> String {
    format!("{{{key}}}:%lease")
}

/// The revision record of `key` (see [`CacheKey::revision_key`]).
pub(crate) fn revision_key(key: &str) -> String {
    format!("{{{key}}}:%revision")
}

/// A full Redis key together with the entity it belongs to.
#[derive(Clone)]
pub struct CacheKey {
    key: String,
    /// Offset of the `:` before the variant, for keys with one.
    variant_at: Option<usize>,
    entity: EntityRef,
}

/// A key's entity: borrowed for ever when it can be (see [`Entity::static_key_from_escaped`]).
#[derive(Clone)]
enum EntityRef {
    Static(&'static Entity),
    Owned(Entity),
}

impl std::ops::Deref for EntityRef {
    type Target = Entity;

    fn deref(&self) -> &Entity {
        match self {
            Self::Static(entity) => entity,
            Self::Owned(entity) => entity,
        }
    }
}

impl CacheKey {
    /// The Redis key.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The entity the key belongs to.
    pub fn entity(&self) -> &Entity {
        &self.entity
    }

    /// The escaped id part of the key.
    pub(crate) fn escaped_id(&self) -> &str {
        let start = self.entity.prefix().len();
        &self.key[start..self.variant_at.unwrap_or(self.key.len())]
    }

    /// The key of the lease a loader holds while it computes this key's value. `%l` cannot
    /// come out of escaping, so no id or variant collides with it; the braces put it in the
    /// key's own Redis Cluster hash slot, so scripts may touch both.
    pub(crate) fn lease_key(&self) -> String {
        lease_key(&self.key)
    }

    /// Where a loader holding the lease `token` writes its value before moving it under this
    /// key (in the key's own Cluster slot, like the lease).
    pub(crate) fn loaded_key(&self, token: &str) -> String {
        let own = token.split(':').next().unwrap_or(token);
        format!("{{{}}}:%loaded:{own}", self.key)
    }

    /// The key recording the highest revision an ordered write stored under this key; in the
    /// key's own Cluster slot, like the lease.
    pub(crate) fn revision_key(&self) -> String {
        revision_key(&self.key)
    }

    /// The key of the id and the variant (empty without one), as the local tier files them:
    /// from the variant's position, without scanning the key.
    pub(crate) fn id_and_variant(&self) -> (&str, &str) {
        match self.variant_at {
            Some(at) => (&self.key[..at], &self.key[at + 1..]),
            None => (&self.key, ""),
        }
    }

    /// Whether the key has a variant (and so a variants token to be valid under).
    pub(crate) fn has_variant(&self) -> bool {
        self.variant_at.is_some()
    }

    /// For a key with a variant, the key of its id's variants token.
    pub(crate) fn variants_token_key(&self) -> Option<String> {
        self.variant_at
            .map(|_| self.entity.prefix().variants_token_key(self.escaped_id()))
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheKey").field(&self.key).finish()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}
