//! Configuration: a validating builder with named defaults, loadable from the environment.

mod env;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::{DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD};
use crate::codec::CodecKind;
use crate::compress::DEFAULT_COMPRESSION_THRESHOLD;
use crate::key::validate_name;
use crate::local::DEFAULT_LOCAL_TIER_BYTES;
use crate::ttl::{DEFAULT_JITTER_PERCENT, MAX_JITTER_PERCENT, TtlClasses};

/// Default time a lease lasts: how long other processes wait for a loader before loading
/// themselves, so a loader that dies costs its peers at most this.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(2);

/// How many failed invalidations are kept one by one before whole entities are invalidated.
pub const DEFAULT_REPLAY_CAPACITY: usize = 10_000;

pub use env::{ENV_VARS, EnvVar};

/// Default Redis URL: the local server.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default schema version in keys (`v1`).
pub const DEFAULT_VERSION: u32 = 1;
/// Default number of multiplexed connections. One: every call on it is pipelined with the
/// others in flight, so Redis reads and answers many commands per system call; a second
/// connection halves those batches and cost Redis about 40 % more CPU per call on a two-core
/// host (BENCHMARKS.md, "Redis hits against the peers"). docs/failures.md says when more help.
pub const DEFAULT_POOL_SIZE: usize = 1;
/// The largest pool accepted.
pub const MAX_POOL_SIZE: usize = 64;
/// Default deadline of one Redis operation.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(250);
/// Default largest encoded value that is stored; larger ones are returned but not cached.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Default interval of the per-entity hit-ratio log line.
pub const DEFAULT_METRICS_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A configuration value was rejected; names the field (or environment variable) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache configuration: `{field}`: {message}")]
pub struct ConfigError {
    field: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The rejected field or environment variable.
    pub fn field(&self) -> &str {
        &self.field
    }
}

/// What `redis_url` names (`CACHE_REDIS_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// Ask the server at the first connection (`INFO cluster`): a cluster node means cluster.
    #[default]
    Auto,
    /// One Redis server (or a proxy in front of several). A cluster node is refused, naming
    /// this setting.
    Node,
    /// A Redis Cluster, reached through the seeds.
    Cluster,
}

impl std::str::FromStr for RedisMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "node" | "standalone" => Ok(Self::Node),
            "cluster" => Ok(Self::Cluster),
            other => Err(format!("unknown mode `{other}`; use auto, node or cluster")),
        }
    }
}

/// Validated configuration of a [`Cache`](crate::Cache). Build it with [`CacheConfig::builder`]
/// or [`CacheConfig::from_env`].
#[derive(Clone)]
pub struct CacheConfig {
    pub(crate) redis_url: String,
    pub(crate) redis_mode: RedisMode,
    pub(crate) app_prefix: String,
    pub(crate) version: u32,
    pub(crate) ttl: TtlClasses,
    pub(crate) jitter_percent: u8,
    pub(crate) pool_size: usize,
    pub(crate) operation_timeout: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) max_value_bytes: usize,
    pub(crate) compression_threshold: Option<usize>,
    pub(crate) codec: CodecKind,
    pub(crate) metrics_log_interval: Option<Duration>,
    pub(crate) lease_ttl: Option<Duration>,
    pub(crate) local_tier_bytes: Option<usize>,
    pub(crate) local_tier_for_all: bool,
    pub(crate) replay_capacity: usize,
    /// Caching off: every read runs its loader (see [`CacheConfigBuilder::disabled`]).
    pub(crate) disabled: bool,
    /// The TLS certificates' contents, read at build.
    pub(crate) tls: Option<Arc<crate::tls::TlsPem>>,
}

impl CacheConfig {
    /// A builder holding every default; only the app prefix must be set.
    pub fn builder() -> CacheConfigBuilder {
        CacheConfigBuilder::default()
    }

    /// A builder with defaults overridden by the `CACHE_*` environment variables
    /// ([`ENV_VARS`] lists them). Setters called after it override the environment; to let the
    /// environment override settings made in code (what a deployment expects), set them first
    /// and call [`CacheConfigBuilder::with_env`] last. A `CACHE_*` variable no setting reads is
    /// logged (WARN) with the closest known name.
    pub fn from_env() -> Result<CacheConfigBuilder, ConfigError> {
        Self::builder().with_env()
    }

    /// Like [`Self::from_env`], reading variables through `lookup` (for tests and other sources).
    pub fn from_env_with(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<CacheConfigBuilder, ConfigError> {
        env::apply(Self::builder(), lookup)
    }

    /// The app prefix, first part of every key.
    pub fn app_prefix(&self) -> &str {
        &self.app_prefix
    }

    /// The schema version in keys.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The Redis URL with any password replaced by `***`.
    pub fn redacted_redis_url(&self) -> String {
        redact(&self.redis_url)
    }

    /// The TTL classes.
    pub fn ttl_classes(&self) -> TtlClasses {
        self.ttl
    }

    /// The deadline of one Redis operation.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// The largest encoded value that is stored.
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// The codec values are written with.
    pub fn codec(&self) -> CodecKind {
        self.codec
    }
}

/// The URL with its password replaced by `***`: the userinfo one (`redis://:pw@host`) and the
/// `pass` query parameter of `unix://` URLs (`unix:///run/redis.sock?pass=pw`).
fn redact(url: &str) -> String {
    if url.contains(',') {
        let seeds: Vec<String> = crate::cluster::seed_urls(url)
            .iter()
            .map(|seed| redact(seed))
            .collect();
        return seeds.join(",");
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparsable URL>".to_owned();
    };
    if parsed.password().is_some() {
        // Setting a password only fails for URLs that cannot have one.
        let _ = parsed.set_password(Some("***"));
    }
    let secret_query = parsed
        .query_pairs()
        .any(|(name, _)| name == "pass" || name == "password");
    if secret_query {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if name == "pass" || name == "password" {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.into()
}

impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            redis_url,
            redis_mode,
            app_prefix,
            version,
            ttl,
            jitter_percent,
            pool_size,
            operation_timeout,
            breaker_threshold,
            breaker_cooldown,
            max_value_bytes,
            compression_threshold,
            codec,
            metrics_log_interval,
            lease_ttl,
            local_tier_bytes,
            local_tier_for_all,
            replay_capacity,
            disabled,
            tls,
        } = self;
        f.debug_struct("CacheConfig")
            .field("redis_url", &redact(redis_url))
            .field("redis_mode", redis_mode)
            .field("app_prefix", app_prefix)
            .field("version", version)
            .field("ttl", ttl)
            .field("jitter_percent", jitter_percent)
            .field("pool_size", pool_size)
            .field("operation_timeout", operation_timeout)
            .field("breaker_threshold", breaker_threshold)
            .field("breaker_cooldown", breaker_cooldown)
            .field("max_value_bytes", max_value_bytes)
            .field("compression_threshold", compression_threshold)
            .field("codec", codec)
            .field("metrics_log_interval", metrics_log_interval)
            .field("lease_ttl", lease_ttl)
            .field("local_tier_bytes", local_tier_bytes)
            .field("local_tier_for_all", local_tier_for_all)
            .field("replay_capacity", replay_capacity)
            .field("disabled", disabled)
            .field("tls", tls)
            .finish()
    }
}

/// Builds a [`CacheConfig`]; every setter is named after its knob and consumes the builder.
#[must_use]
#[derive(Clone)]
pub struct CacheConfigBuilder {
    config: CacheConfig,
    app_prefix_set: bool,
    tls_files: crate::tls::TlsFiles,
}

impl Default for CacheConfigBuilder {
    fn default() -> Self {
        Self {
            config: CacheConfig {
                redis_url: DEFAULT_REDIS_URL.to_owned(),
                redis_mode: RedisMode::Auto,
                app_prefix: String::new(),
                version: DEFAULT_VERSION,
                ttl: TtlClasses::default(),
                jitter_percent: DEFAULT_JITTER_PERCENT,
                pool_size: DEFAULT_POOL_SIZE,
                operation_timeout: DEFAULT_OPERATION_TIMEOUT,
                breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
                breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
                max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
                compression_threshold: Some(DEFAULT_COMPRESSION_THRESHOLD),
                codec: CodecKind::default(),
                metrics_log_interval: Some(DEFAULT_METRICS_LOG_INTERVAL),
                lease_ttl: Some(DEFAULT_LEASE_TTL),
                local_tier_bytes: Some(DEFAULT_LOCAL_TIER_BYTES),
                local_tier_for_all: false,
                disabled: false,
                replay_capacity: DEFAULT_REPLAY_CAPACITY,
                tls: None,
            },
            app_prefix_set: false,
            tls_files: crate::tls::TlsFiles::default(),
        }
    }
}

impl fmt::Debug for CacheConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheConfigBuilder")
            .field(&self.config)
            .finish()
    }
}

impl CacheConfigBuilder {
    /// Verifies the server against this CA (PEM) instead of the system's roots: a private
    /// CA, as managed and self-hosted Redis often use. Needs a `rediss://` URL.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls_files.ca = Some(path.into());
        self
    }

    /// Presents this certificate and key (PEM) to servers that require client certificates
    /// (mutual TLS, `tls-auth-clients yes`). Needs a `rediss://` URL.
    pub fn tls_client_cert_files(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls_files.cert = Some(cert.into());
        self.tls_files.key = Some(key.into());
        self
    }

    pub(crate) fn tls_cert_file(mut self, path: &str) -> Self {
        self.tls_files.cert = Some(path.into());
        self
    }

    pub(crate) fn tls_key_file(mut self, path: &str) -> Self {
        self.tls_files.key = Some(path.into());
        self
    }

    /// Applies the `CACHE_*` environment variables ([`ENV_VARS`]) over what this builder holds:
    /// whichever comes later wins, so
    /// `CacheConfig::builder().app_prefix("shop").version(3).with_env()?` lets a deployment's
    /// `CACHE_VERSION` override the 3 written in code. A `CACHE_*` variable no setting reads is
    /// logged (WARN) with the closest known name.
    pub fn with_env(self) -> Result<Self, ConfigError> {
        env::warn_unknown();
        self.with_env_from(|name| std::env::var(name).ok())
    }

    /// [`Self::with_env`], reading variables through `lookup` (for tests and other sources).
    pub fn with_env_from(
        self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        env::apply(self, lookup)
    }

    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (feature `tls`). For Redis
    /// Cluster, comma-separated seeds: `redis://a:7000,b:7001,c:7002` (a seed without a scheme
    /// takes the first one's scheme and credentials).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = url.into();
        self
    }

    /// Whether the URL names a plain Redis or a Redis Cluster; [`RedisMode::Auto`] (the
    /// default) asks the server.
    pub fn redis_mode(mut self, mode: RedisMode) -> Self {
        self.config.redis_mode = mode;
        self
    }

    /// The application's key prefix (`[a-z0-9_-]+`), e.g. `shop`. Required.
    pub fn app_prefix(mut self, app: impl Into<String>) -> Self {
        self.config.app_prefix = app.into();
        self.app_prefix_set = true;
        self
    }

    /// The schema version in keys; bump it when cached types change.
    pub fn version(mut self, version: u32) -> Self {
        self.config.version = version;
        self
    }

    /// The `short` TTL class.
    pub fn ttl_short(mut self, ttl: Duration) -> Self {
        self.config.ttl.short = ttl;
        self
    }

    /// The `medium` TTL class.
    pub fn ttl_medium(mut self, ttl: Duration) -> Self {
        self.config.ttl.medium = ttl;
        self
    }

    /// The `long` TTL class.
    pub fn ttl_long(mut self, ttl: Duration) -> Self {
        self.config.ttl.long = ttl;
        self
    }

    /// Uniform jitter applied to every TTL written, ± this percentage (0 to 50).
    pub fn jitter_percent(mut self, percent: u8) -> Self {
        self.config.jitter_percent = percent;
        self
    }

    /// Number of multiplexed Redis connections used round-robin (1 to 64).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.config.pool_size = size;
        self
    }

    /// Deadline of each Redis operation; a call never waits longer on Redis.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.config.operation_timeout = timeout;
        self
    }

    /// Consecutive connection-class failures that open the circuit breaker.
    pub fn breaker_threshold(mut self, failures: u32) -> Self {
        self.config.breaker_threshold = failures;
        self
    }

    /// How long the breaker stays open before probing Redis again.
    pub fn breaker_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.breaker_cooldown = cooldown;
        self
    }

    /// Largest encoded value stored; larger values are returned to the caller but not cached.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.config.max_value_bytes = bytes;
        self
    }

    /// Encoded values larger than this are LZ4-compressed; `None` turns compression off.
    pub fn compression_threshold(mut self, bytes: Option<usize>) -> Self {
        self.config.compression_threshold = bytes;
        self
    }

    /// The codec values are written with.
    pub fn codec(mut self, codec: CodecKind) -> Self {
        self.config.codec = codec;
        self
    }

    /// Interval of the per-entity hit-ratio log line; `None` turns it off.
    pub fn metrics_log_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.metrics_log_interval = interval;
        self
    }

    /// How long a loader's lease lasts (one loader per key across processes, and no stale
    /// sets); `None` turns leases off.
    pub fn lease_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.config.lease_ttl = ttl;
        self
    }

    /// Bound of the in-process tier in bytes; `None` turns the tier off (the invalidation
    /// subscriber runs either way: it keeps invalidation marks current too).
    pub fn local_tier_bytes(mut self, bytes: Option<usize>) -> Self {
        self.config.local_tier_bytes = bytes;
        self
    }

    /// Caching off (`CACHE_DISABLED=true`): every read runs its loader (no coalescing), writes
    /// and invalidations do nothing, and Redis is never contacted; the per-entity counters
    /// still count each read as a miss and a loader call. For tests that assert what the
    /// source was asked, and for ruling the cache out when chasing a bug. Operator calls
    /// (`purge_old_versions`) and sessions answer `CacheError::Disabled`; rate limiters answer
    /// as their `WhenUnavailable` says.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.config.disabled = disabled;
        self
    }

    /// Use the in-process tier for every entity, not only those that ask for it (`local`).
    pub fn local_tier_for_all(mut self, all: bool) -> Self {
        self.config.local_tier_for_all = all;
        self
    }

    /// How many invalidations that could not reach Redis are kept for replay one by one;
    /// beyond that, the affected entities are invalidated wholesale when Redis is back.
    pub fn replay_capacity(mut self, invalidations: usize) -> Self {
        self.config.replay_capacity = invalidations;
        self
    }

    /// Validates every field; the error names the first bad one.
    pub fn build(self) -> Result<CacheConfig, ConfigError> {
        let mut c = self.config;
        c.tls = self.tls_files.load(&c.redis_url)?;
        let seeds = crate::cluster::seed_urls(&c.redis_url);
        for seed in &seeds {
            validate_url(seed)?;
        }
        if seeds.len() > 1 && c.redis_mode == RedisMode::Node {
            return Err(ConfigError::new(
                "redis_mode",
                "`node` takes one URL, but redis_url lists several seeds (they are for Redis Cluster: use mode `cluster` or `auto`)",
            ));
        }
        if !self.app_prefix_set {
            return Err(ConfigError::new(
                "app_prefix",
                "not set; every key starts with it (e.g. `.app_prefix(\"shop\")` or CACHE_APP_PREFIX=shop)",
            ));
        }
        validate_name("app prefix", &c.app_prefix)
            .map_err(|e| ConfigError::new("app_prefix", e.to_string()))?;
        for (field, ttl) in [
            ("ttl_short", c.ttl.short),
            ("ttl_medium", c.ttl.medium),
            ("ttl_long", c.ttl.long),
        ] {
            if ttl < Duration::from_millis(1) {
                return Err(ConfigError::new(field, "must be at least 1ms"));
            }
        }
        if c.jitter_percent > MAX_JITTER_PERCENT {
            return Err(ConfigError::new(
                "jitter_percent",
                format!(
                    "{} is above the maximum of {MAX_JITTER_PERCENT}",
                    c.jitter_percent
                ),
            ));
        }
        if !(1..=MAX_POOL_SIZE).contains(&c.pool_size) {
            return Err(ConfigError::new(
                "pool_size",
                format!("{} is outside 1..={MAX_POOL_SIZE}", c.pool_size),
            ));
        }
        if c.operation_timeout < Duration::from_millis(1)
            || c.operation_timeout > Duration::from_secs(60)
        {
            return Err(ConfigError::new(
                "operation_timeout",
                "must be between 1ms and 60s",
            ));
        }
        if c.breaker_threshold == 0 {
            return Err(ConfigError::new("breaker_threshold", "must be at least 1"));
        }
        if c.breaker_cooldown.is_zero() {
            return Err(ConfigError::new("breaker_cooldown", "must not be zero"));
        }
        if c.max_value_bytes < 64 || c.max_value_bytes > 512 * 1024 * 1024 {
            return Err(ConfigError::new(
                "max_value_bytes",
                "must be between 64 bytes and 512 MiB (Redis' own limit)",
            ));
        }
        if c.metrics_log_interval
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return Err(ConfigError::new(
                "metrics_log_interval",
                "must be at least 1s (or off)",
            ));
        }
        if c.local_tier_bytes.is_some_and(|b| b < 4096) {
            return Err(ConfigError::new(
                "local_tier_bytes",
                "must be at least 4096 (or off)",
            ));
        }
        if c.lease_ttl.is_some_and(|d| d < Duration::from_millis(10)) {
            return Err(ConfigError::new(
                "lease_ttl",
                "must be at least 10ms (or off)",
            ));
        }
        Ok(c)
    }
}

fn validate_url(url: &str) -> Result<(), ConfigError> {
    let field = "redis_url";
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(ConfigError::new(
            field,
            "`rediss://` needs the `tls` feature of cache-runtime",
        ));
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| ConfigError::new(field, format!("`{}` is not a URL: {e}", redact(url))))?;
    if !matches!(parsed.scheme(), "redis" | "rediss" | "unix" | "redis+unix") {
        return Err(ConfigError::new(
            field,
            format!(
                "scheme `{}` is not supported; use redis://, rediss:// or unix://",
                parsed.scheme()
            ),
        ));
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| ConfigError::new(field, format!("`{}`: {e}", redact(url))))
}

#[cfg(test)]
mod tests;
