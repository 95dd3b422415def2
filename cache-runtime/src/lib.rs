//! A Redis cache-aside runtime: configure once, then read through [`Cache::get_or_set`] (or the
//! `#[cached]` macros) and the cache never makes a call fail that would have succeeded without it.
//!
//! ```no_run
//! use cache_runtime::{Cache, CacheConfig, Ttl};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = CacheConfig::builder().app_prefix("shop").with_env()?.build()?;
//! let cache = Cache::new(config)?;
//! cache_runtime::install(cache.clone())?;
//!
//! let products = cache.entity("product")?;
//! let key = products.key(&42u64); // shop:v1:product:42
//! let name = cache
//!     .get_or_set(&key, Ttl::Medium, || async { Ok::<_, std::io::Error>("lamp".to_owned()) })
//!     .await?;
//! println!("{name}");
//! # Ok(()) }
//! ```
//!
//! With the macros (re-exported here from `cache-macros`):
//!
//! ```no_run
//! use cache_runtime::{cached, invalidates};
//!
//! struct Repo;
//!
//! impl Repo {
//!     #[cached(entity = "product", ttl = "medium", key = "{id}")]
//!     async fn product(&self, id: u64) -> Result<String, std::io::Error> {
//!         Ok(format!("product {id}")) // the expensive read
//!     }
//!
//!     #[invalidates(entity = "product", key = "{id}")]
//!     async fn rename(&self, id: u64, name: &str) -> Result<(), std::io::Error> {
//!         let _ = (id, name); // the write
//!         Ok(())
//!     }
//! }
//! ```
//!
//! The guides live in the repository's `docs/`: keys, macros, freshness (single flight,
//! leases, stale-while-revalidate, early refresh), invalidation (local tier, bus, replay) and
//! failure handling.

// The examples (the README's included) compile without a warning, as a user's copy would.
#![doc(test(attr(deny(unused_variables, unused_imports, unused_mut))))]

mod breaker;
mod bus;
mod cache;
mod clock;
mod cluster;
mod codec;
mod compress;
mod config;
mod connection;
mod deadline;
mod entity;
mod envelope;
mod error;
#[cfg(feature = "metrics")]
mod export;
mod flight;
mod freshness;
mod global;
pub mod inspect;
mod key;
mod load_timeout;
mod local;
mod macro_support;
mod marks;
mod metrics;
mod probes;
mod rate_limit;
mod report;
mod script;
mod session;
mod share;
#[cfg(feature = "testing")]
pub mod testing;
mod thread_shard;
mod tls;
mod ttl;

pub use breaker::{BreakerState, DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD};
pub use cache::{BatchError, Cache, PurgeOptions, PurgeReport};
pub use clock::{Clock, MockClock, SystemClock};
#[cfg(feature = "json")]
pub use codec::Json;
pub use codec::{CacheValue, Codec, CodecError, CodecKind, Postcard};
pub use compress::DEFAULT_COMPRESSION_THRESHOLD;
pub use config::{
    CacheConfig, CacheConfigBuilder, ConfigError, DEFAULT_LEASE_TTL, DEFAULT_MAX_VALUE_BYTES,
    DEFAULT_METRICS_LOG_INTERVAL, DEFAULT_OPERATION_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_REDIS_URL,
    DEFAULT_REPLAY_CAPACITY, DEFAULT_VERSION, ENV_VARS, EnvVar, MAX_POOL_SIZE, RedisMode,
};
pub use entity::{CacheKey, Entity};
pub use error::CacheError;
#[cfg(feature = "metrics")]
pub use export::{REDIS_SECONDS, REDIS_SECONDS_BUCKETS};
pub use freshness::{DEFAULT_EARLY_REFRESH_BETA, ReadOptions};
pub use global::{
    AlreadyInstalled, current, current_for_reads, install, refreshing, spawn, uncached, with_cache,
};
pub use key::{KeyPart, NameError, escape_into, validate_name};
pub use load_timeout::{LoadTimedOut, with_load_timeout};
pub use local::DEFAULT_LOCAL_TIER_BYTES;
pub use metrics::EntityMetrics;
pub use rate_limit::{Decision, RateLimiter, WhenUnavailable};
#[cfg(feature = "tower")]
pub use rate_limit::{RateLimit, RateLimitLayer};
pub use session::Sessions;
pub use tls::TlsFiles;
pub use ttl::{
    DEFAULT_JITTER_PERCENT, DEFAULT_TTL_LONG, DEFAULT_TTL_MEDIUM, DEFAULT_TTL_SHORT,
    DurationParseError, Jitter, MAX_JITTER_PERCENT, Ttl, TtlClasses, parse_duration,
};

pub use cache_macros::{cache_put, cached, invalidates};

/// What macro expansions call. Not public API: no semver guarantees.
#[doc(hidden)]
pub mod __private {
    pub use crate::freshness::ReadOptions;
    pub use crate::load_timeout::with_load_timeout;
    pub use crate::macro_support::*;
    pub use crate::probes::return_kind::*;
    pub use crate::ttl::Ttl;
    pub use core::time::Duration;
}

/// The envelope layout, public for tools that inspect stored values.
pub mod envelope_format {
    pub use crate::envelope::{Envelope, Header, MAX_TAG_LEN, MAX_TAGS, Tags};
}

// The README's examples compile as doc tests, so the quick start cannot drift from the API.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

// And so do docs/testing.md's.
#[doc = include_str!("../../docs/testing.md")]
#[cfg(all(doctest, feature = "testing"))]
pub struct TestingDoctests;
