//! The `Cache` service: explicit `get`/`set`/`delete`, cache-aside `get_or_set`, invalidation.

mod background;
mod batch;
mod bus_publish;
mod cluster_call;
pub(crate) mod fence;
mod invalidate;
pub(crate) mod key_events;
pub(crate) mod lease;
mod loaded;
pub(crate) mod ordered;
mod policy;
mod purge;
mod read_through;
mod redis_call;
mod replay;
pub(crate) mod storage;
mod tasks;
pub(crate) mod topology;
mod validity;
mod write;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::breaker::BreakerState;
use crate::bus::{self, Event};
use crate::clock::{Clock, SystemClock};
use crate::config::CacheConfig;
use crate::deadline::Deadlines;
use crate::entity::{CacheKey, Entity};
use crate::error::CacheError;
use crate::flight::Flights;
use crate::freshness::ReadOptions;
use crate::key::{EntityPrefix, NameError, app_mark_key};
use crate::local::LocalTier;
use crate::marks::{MarkCell, Marks};
use crate::metrics::{EntityMetrics, bump};
use crate::report;
use crate::script::Scripts;
use crate::ttl::{Jitter, Ttl};

pub(crate) use background::spawn_refresh;
pub use background::{RefreshJob, Spawner};
pub use batch::BatchError;
pub(crate) use loaded::{Optional, Plain};
pub(crate) use policy::Policy;
pub use purge::{PurgeOptions, PurgeReport};
pub(crate) use read_through::BatchItem;
use replay::{Intent, ReplayQueue};
pub(crate) use storage::Stored;
pub(crate) use write::{WriteStart, Written};

/// A handle to the cache; clones share one pool, breaker and set of counters.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use cache_runtime::{Cache, CacheConfig, Ttl};
///
/// let cache = Cache::new(CacheConfig::builder().app_prefix("shop").build()?)?;
/// let products = cache.entity("product")?;
/// let name: Result<String, std::io::Error> = cache
///     .get_or_set(&products.key(&42u64), Ttl::Medium, || async { Ok("lamp".to_owned()) })
///     .await;
/// println!("{}", name?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    /// Distinguishes caches in one process (per-call-site entity memo of the macros).
    id: u64,
    config: CacheConfig,
    /// The Redis server or cluster, each node with its connections and breaker.
    redis: topology::Redis,
    deadlines: Deadlines,
    jitter: Jitter,
    entities: Mutex<HashMap<(String, u32), Entity>>,
    flights: Flights,
    /// The Redis latency histogram's handles (feature `metrics`).
    #[cfg(feature = "metrics")]
    redis_times: std::sync::OnceLock<crate::export::RedisTimes>,
    /// This instance's id in invalidation events, so it can ignore its own.
    origin: u64,
    /// The invalidation channel.
    channel: String,
    /// Where this instance's echoes go: a channel of its own, so each is delivered once,
    /// whatever the number of instances.
    echo_channel: String,
    /// The entities whose key events this instance subscribes to.
    hearing: key_events::Hearing,
    local: Option<LocalTier>,
    /// The invalidation marks this instance knows.
    marks: Marks,
    /// The mark of the whole app (`invalidate_all`), shared with `marks`.
    app_mark: Arc<MarkCell>,
    replay: ReplayQueue,
    /// Which Redis process reads go to, and whether it was fenced.
    fence: fence::Fence,
    refreshing: background::Refreshing,
    tasks: tasks::Tasks,
    /// How Lua scripts are sent (by digest, unless the server refuses it).
    scripts: Scripts,
    /// The breaker's cooldowns and values' freshness are measured on it.
    clock: Arc<dyn Clock>,
}

impl Inner {
    /// The subscriber task is gone (its runtime shut down, or the process is exiting): the
    /// same as a lost connection, logged at DEBUG (a restart on another runtime logs WARN).
    pub(crate) fn subscriber_stopped(&self) {
        self.fence.unverify();
        self.marks.bus_changed(false);
        if let Some(local) = &self.local {
            local.set_live(false);
        }
        tracing::debug!(channel = %self.channel, "invalidation subscriber stopped");
    }

    pub(crate) fn apply_locally(&self, event: &Event) {
        match event {
            Event::EntityMark(mark_key, epoch) => {
                self.marks.saw(*epoch);
                if let Some(cell) = self.marks.entity_cell_if_used(mark_key) {
                    cell.raise(*epoch);
                }
            }
            Event::TagMark(tag, epoch) => {
                self.marks.saw(*epoch);
                if let Some(cell) = self.marks.tag_cell_if_used(tag) {
                    cell.raise(*epoch);
                }
            }
            Event::Key(_) | Event::Id(_) | Event::Prefix(_) | Event::Echo => {}
        }
        let Some(local) = &self.local else { return };
        match event {
            Event::Key(key) => local.remove(key),
            Event::Id(key) => local.remove_id(key),
            Event::Prefix(prefix) => local.remove_prefix(prefix),
            // Local hits check marks: nothing needs to go.
            Event::EntityMark(..) | Event::TagMark(..) | Event::Echo => {}
        }
    }
}

impl bus::Listener for Inner {
    fn operation_timeout(&self) -> Duration {
        self.config.operation_timeout
    }

    /// The subscriber connected or lost its connection.
    fn bus_connected(&self, connected: bool) {
        self.marks.bus_changed(connected);
        // Events may have been missed (or may be late): no new read joins a load in flight
        // now, which an id or key invalidation among them might cover.
        self.flights.detach(|_| true);
        if let Some(local) = &self.local {
            local.set_live(connected);
        }
        let message = "invalidation subscriber disconnected: local tier flushed and off, invalidation marks read from Redis, until it reconnects";
        match (connected, self.outage_known()) {
            (true, _) => {
                tracing::debug!(channel = %self.channel, "invalidation subscriber connected");
            }
            (false, true) => tracing::debug!(channel = %self.channel, "{message}"),
            (false, false) => tracing::warn!(channel = %self.channel, "{message}"),
        }
    }

    fn outage_known(&self) -> bool {
        self.redis.breaker_state() != BreakerState::Closed
    }

    /// Applies an event received from the bus (events of this instance are ignored: they were
    /// applied when sent).
    fn apply_event(&self, payload: &str) {
        match Event::decode(payload) {
            Some((origin, _)) if origin == self.origin => {}
            Some((_, event)) => {
                // A read that starts here from now on must not join a load older than the
                // invalidation, as on the instance that made it.
                self.flights.detach_covered(&event);
                self.apply_locally(&event);
            }
            None => tracing::debug!(payload, "ignoring an unreadable invalidation event"),
        }
    }

    fn send_echo(self: Arc<Self>) {
        tokio::spawn(async move {
            let cache = Cache { inner: self };
            // A failed echo is only a late echo: the lag check then turns the tier off.
            let _ = cache.publish_echo().await;
            if let Err(error) = cache.recheck_fence().await {
                tracing::debug!(%error, "could not compare the Redis run_id");
            }
        });
    }

    fn subscription_lost(&self) {
        self.key_channels_lost();
        self.fence.unverify();
    }

    async fn subscription_client(self: Arc<Self>) -> Option<redis::Client> {
        let cache = Cache { inner: self };
        // Down or refused: the seed, whose failure to connect the subscriber retries.
        let _ = cache.topology().await;
        let url = cache.inner.redis.subscription_url(&cache.inner.config);
        crate::tls::client(&url, cache.inner.config.tls.as_deref()).ok()
    }

    fn should_move_subscription(&self, address: &str) -> bool {
        self.redis
            .found_cluster()
            .is_some_and(|cluster| cluster.is_master_with_replicas_elsewhere(address))
    }

    fn wanted_key_channels(&self, all: bool) -> Vec<String> {
        Inner::wanted_key_channels(self, all)
    }

    fn key_channels_heard(&self, channels: &[String]) {
        Inner::key_channels_heard(self, channels);
    }

    fn is_own_echo(&self, payload: &str) -> bool {
        matches!(Event::decode(payload), Some((origin, Event::Echo)) if origin == self.origin)
    }
}

impl report::MetricsSource for Inner {
    /// Every entity's counters since the start: resets are for callers of `Cache::metrics`.
    fn metrics(&self) -> Vec<EntityMetrics> {
        self.all_metrics(Entity::lifetime_metrics)
    }
}

impl Inner {
    /// `snapshot` of every entity, sorted by name and version.
    pub(crate) fn all_metrics(&self, snapshot: fn(&Entity) -> EntityMetrics) -> Vec<EntityMetrics> {
        let mut all: Vec<EntityMetrics> = self
            .entities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(snapshot)
            .collect();
        all.sort_by(|a, b| (&a.entity, a.version).cmp(&(&b.entity, b.version)));
        all
    }
}

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

impl Cache {
    /// A cache over `config`. Connects lazily: this never blocks and succeeds while Redis is
    /// down. Must be called inside a Tokio runtime.
    pub fn new(config: CacheConfig) -> Result<Self, CacheError> {
        Self::with_clock(config, Arc::new(SystemClock::default()))
    }

    /// Like [`Self::new`], with the clock the circuit breaker measures its cooldown on and
    /// values' freshness (stale windows, early refresh, the local tier's expiry) is judged by:
    /// a [`crate::MockClock`] in tests. Redis' own TTLs follow it only on the in-memory Redis
    /// of `testing` built with the same clock.
    pub fn with_clock(config: CacheConfig, clock: Arc<dyn Clock>) -> Result<Self, CacheError> {
        // A disabled cache starts no task, so it needs no runtime.
        let runtime = match config.disabled {
            true => None,
            false => {
                Some(tokio::runtime::Handle::try_current().map_err(|_| CacheError::NoRuntime)?)
            }
        };
        let redis = topology::Redis::new(&config, clock.clone()).map_err(CacheError::from_redis)?;
        let local = config.local_tier_bytes.map(LocalTier::new);
        let marks = Marks::default();
        let channel = bus::channel(&config.app_prefix);
        let origin = rand::random();
        let inner = Arc::new(Inner {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            origin,
            channel,
            echo_channel: bus::echo_channel(&config.app_prefix, origin),
            hearing: key_events::Hearing::default(),
            local,
            app_mark: marks.entity_cell(&app_mark_key(&config.app_prefix)),
            marks,
            replay: ReplayQueue::new(config.replay_capacity),
            fence: fence::Fence::default(),
            refreshing: background::Refreshing::default(),
            jitter: Jitter::new(config.jitter_percent),
            deadlines: Deadlines::new(config.operation_timeout),
            tasks: tasks::Tasks::default(),
            scripts: Scripts::default(),
            clock,
            redis,
            entities: Mutex::new(HashMap::new()),
            flights: Flights::default(),
            #[cfg(feature = "metrics")]
            redis_times: std::sync::OnceLock::new(),
            config,
        });
        // A disabled cache never contacts Redis: no subscriber, no replay, no sweeper.
        if let Some(runtime) = runtime {
            tasks::spawn_all(&inner, &runtime);
        }
        Ok(Self { inner })
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    /// Caching is off (`CacheConfigBuilder::disabled`, `CACHE_DISABLED`).
    pub fn is_disabled(&self) -> bool {
        self.inner.config.disabled
    }

    /// Milliseconds since the Unix epoch on the cache's clock: what values' freshness is
    /// written and judged in.
    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.clock.unix_micros() / 1_000
    }

    /// How this cache sends Lua scripts.
    pub(crate) fn scripts(&self) -> &Scripts {
        &self.inner.scripts
    }

    /// The configuration this cache runs with.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The entity `name` at the configured schema version.
    pub fn entity(&self, name: &str) -> Result<Entity, NameError> {
        self.entity_at_version(name, self.inner.config.version)
    }

    /// The entity `name` pinned to its own schema `version` (for migrating one type).
    pub fn entity_at_version(&self, name: &str, version: u32) -> Result<Entity, NameError> {
        let mut entities = self
            .inner
            .entities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entity) = entities.get(&(name.to_owned(), version)) {
            return Ok(entity.clone());
        }
        let prefix = EntityPrefix::new(&self.inner.config.app_prefix, version, name)?;
        let mark = self.inner.marks.entity_cell(&prefix.mark_key());
        let entity = Entity::new(prefix, mark);
        entities.insert((name.to_owned(), version), entity.clone());
        Ok(entity)
    }

    /// Snapshots of every entity's counters, sorted by name and version.
    pub fn metrics(&self) -> Vec<EntityMetrics> {
        self.inner.all_metrics(Entity::metrics)
    }

    /// Every entity's counters since the start, whatever the resets (the exporter's).
    #[cfg(feature = "metrics")]
    pub(crate) fn lifetime_metrics(&self) -> Vec<EntityMetrics> {
        self.inner.all_metrics(Entity::lifetime_metrics)
    }

    /// Sets what [`Self::metrics`] answers back to zero (see [`Entity::reset_metrics`]).
    pub fn reset_metrics(&self) {
        let entities = self
            .inner
            .entities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for entity in entities.values() {
            entity.reset_metrics();
        }
    }

    /// The circuit breaker's state; on Redis Cluster the worst of the masters' (see
    /// [`Self::nodes`]).
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.redis.breaker_state()
    }

    /// Each node keys live on (the one Redis, or every master of a cluster) with its circuit
    /// breaker's state.
    pub fn nodes(&self) -> Vec<(String, BreakerState)> {
        self.inner
            .redis
            .masters()
            .iter()
            .map(|node| (node.address.clone(), node.breaker.state()))
            .collect()
    }

    /// Whether this instance receives invalidation events now; while it does not, its local
    /// tier is empty and unused.
    pub fn invalidation_bus_connected(&self) -> bool {
        self.inner.local.as_ref().is_some_and(LocalTier::is_live)
    }

    /// How many entries the in-process tier holds.
    pub fn local_tier_len(&self) -> usize {
        self.inner.local.as_ref().map_or(0, LocalTier::len)
    }

    /// How many times the circuit breaker changed state since the cache was created.
    pub fn breaker_transitions(&self) -> u64 {
        self.inner.redis.breaker_transitions()
    }

    /// The value stored under `key`, or `None` on a miss. A stored value that cannot be decoded
    /// (an older struct shape, foreign bytes) is a miss, and so is a cached absence.
    pub async fn get<T: DeserializeOwned>(&self, key: &CacheKey) -> Result<Option<T>, CacheError> {
        if self.is_disabled() {
            bump(&key.entity().counters().misses);
            return Ok(None);
        }
        match self.read(key).await? {
            storage::Lookup::Hit(value, _) => Ok(Some(value)),
            storage::Lookup::Absent(_) | storage::Lookup::Miss => Ok(None),
        }
    }

    /// The values stored under `keys`, in their order (`None`: a miss, as for [`Self::get`]), in
    /// one round trip however many keys: what a page or a search result needs to read the
    /// entities it lists. Reads Redis only, not the in-process tier. Loading the misses is the
    /// caller's (in one query, say), and so is storing them: with [`Self::set_ordered`] and
    /// the row's version, a value loaded before a change committed cannot replace the
    /// change's write-through.
    pub async fn get_many<T: DeserializeOwned>(
        &self,
        keys: &[CacheKey],
    ) -> Result<Vec<Option<T>>, CacheError> {
        if self.is_disabled() {
            for key in keys {
                bump(&key.entity().counters().misses);
            }
            return Ok(keys.iter().map(|_| None).collect());
        }
        let found = self.fetch_many(keys).await?;
        let mut values = Vec::with_capacity(keys.len());
        let batch = validity::BatchMarks::default();
        for (key, found) in keys.iter().zip(&found) {
            let lookup = match self.lookup_now(key, found) {
                Some(lookup) => lookup,
                None => self.lookup_reading_marks(Some(&batch), key, found).await?,
            };
            values.push(match lookup {
                storage::Lookup::Hit(value, _) => Some(value),
                storage::Lookup::Absent(_) | storage::Lookup::Miss => None,
            });
        }
        Ok(values)
    }

    /// Stores `value` under `key` for `ttl` (with jitter). A loader computing this key
    /// concurrently will not overwrite it with what it read before (its lease is voided).
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: &T,
        ttl: Ttl,
    ) -> Result<(), CacheError> {
        self.store(key, storage::Stored::Value(value), ttl, None)
            .await
            .map(drop)
    }

    /// Stores `value` under `key` for `ttl` (with jitter) unless the key was already written
    /// with a higher `revision`: of two writes of one key that race, the newer
    /// stays, whatever order they reach Redis in. `revision` is whatever orders the source's
    /// changes (a row version, a commit sequence); a deletion stored as an absence takes the
    /// deleted row's version plus one. An equal revision is stored again (it is the same
    /// content). Returns whether the value was stored (`false`: a newer one is there). Like [`Self::set`] otherwise: loaders' leases are voided, the other
    /// instances told, and a failed write becomes an invalidation of the key.
    ///
    /// The revision is kept inside the stored value; an invalidation of the key moves it to a
    /// record (`{<key>}:%revision`) for what was left of the value's TTL, so a late older
    /// write stays refused after one. An ordered write reaching Redis after the value (or
    /// record) expired or was evicted is stored. The value is stamped at the call:
    /// an entity, tag or app invalidation made while it was being read from the source does not
    /// cover it (`#[cache_put]` stamps before running the function, so there it does).
    pub async fn set_ordered<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: &T,
        ttl: Ttl,
        revision: u64,
    ) -> Result<bool, CacheError> {
        let written = self
            .store(key, storage::Stored::Value(value), ttl, Some(revision))
            .await?;
        Ok(written == Written::Stored)
    }

    /// Deletes `key` alone; `true` when something was deleted. To drop an id together with all
    /// its variants, use [`Self::invalidate_id`]. If Redis cannot be reached, the error is
    /// returned and the delete is also replayed when Redis answers again.
    pub async fn delete(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let removed = self.invalidate(Intent::Key(key.clone())).await?;
        tracing::debug!(key = key.as_str(), removed, "cache delete");
        Ok(removed > 0)
    }

    /// Cache-aside: the value under `key`, or else `loader`'s value, stored for `ttl`.
    ///
    /// Redis trouble never fails this call: on any Redis error the loader is called and its
    /// result returned. The loader's own error passes through unchanged and is not cached.
    pub async fn get_or_set<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        ttl: Ttl,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_or_set_with(key, ReadOptions::new(ttl), loader)
            .await
    }

    /// [`Self::get_or_set`] with stale serving, fail-safe and early refresh per `options`.
    ///
    /// Concurrent callers of one key share one loader call. If it fails, each of them calls
    /// its own loader (the error type need not be `Clone` here); `#[cached]` hands them a
    /// copy of the error instead when its type is `Clone + Send + Sync + 'static`.
    ///
    /// ```no_run
    /// # async fn demo(cache: cache_runtime::Cache) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use cache_runtime::{ReadOptions, Ttl};
    ///
    /// const PRICES: ReadOptions = ReadOptions::new(Ttl::Short)
    ///     .stale(Duration::from_secs(300))
    ///     .early_refresh(1.0)
    ///     .refresh_timeout(Duration::from_millis(200));
    /// let key = cache.entity("price")?.key(&42u64);
    /// let price = cache
    ///     .get_or_set_with(&key, PRICES, || async { Ok::<_, std::io::Error>(1999u32) })
    ///     .await?;
    /// println!("{price} cents");
    /// # Ok(()) }
    /// ```
    pub async fn get_or_set_with<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        options: ReadOptions,
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let policy = Policy::new(options);
        let Plain(value) = self
            .read_through(key, &policy, None, async { loader().await.map(Plain) })
            .await?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::bus::Listener;

    /// A cache that never reaches Redis (nothing listens on port 1): enough to drive the local
    /// tier and the bus handler directly.
    fn offline() -> Cache {
        let config = CacheConfig::builder()
            .redis_url("redis://127.0.0.1:1")
            .app_prefix("unit")
            .metrics_log_interval(None)
            .build()
            .expect("config");
        Cache::new(config).expect("cache")
    }

    /// The local tier's hit path takes a key's id and variant from where the key was built;
    /// everything else files entries by scanning the key: both must agree, ids and variants
    /// with colons and percent signs included.
    #[tokio::test]
    async fn a_keys_id_and_variant_are_where_the_local_tier_files_them() {
        let cache = offline();
        let products = cache.entity("product").expect("entity");
        let keys = [
            products.key(&42u32),
            products.key(&"a:b%c"),
            products.variant_key(&"a:b", &"en:GB"),
            products.variant_key(&7u8, &""),
        ];
        for key in keys {
            assert_eq!(
                key.id_and_variant(),
                crate::local::split(key.as_str()),
                "{}",
                key.as_str()
            );
        }
    }

    #[tokio::test]
    async fn an_instance_ignores_its_own_events_and_applies_everyone_elses() {
        let cache = offline();
        let inner = &cache.inner;
        let local = inner.local.as_ref().expect("local tier on by default");
        local.set_live(true);
        local.insert(
            "unit:v1:product:1",
            Arc::from(&b"v"[..]),
            u64::MAX,
            local.generation("unit:v1:product:1"),
            0,
        );

        let key = "unit:v1:product:1".to_owned();
        inner.apply_event(&Event::Key(key.clone()).encode(inner.origin));
        assert_eq!(
            local.len(),
            1,
            "its own event was applied when sent, not again"
        );
        inner.apply_event(&Event::Key(key).encode(inner.origin.wrapping_add(1)));
        assert_eq!(local.len(), 0, "another instance's event evicts");
    }

    #[tokio::test]
    async fn unreadable_events_change_nothing() {
        let cache = offline();
        let local = cache.inner.local.as_ref().expect("local tier");
        local.set_live(true);
        local.insert(
            "unit:v1:product:1",
            Arc::from(&b"v"[..]),
            u64::MAX,
            local.generation("unit:v1:product:1"),
            0,
        );
        cache.inner.apply_event("garbage");
        cache.inner.apply_event("");
        assert_eq!(local.len(), 1);
    }
}
