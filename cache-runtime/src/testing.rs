//! Support for testing services that use the cache (feature `testing`; docs/testing.md):
//!
//! - [`TestCache`]: a cache per test (its own app prefix), in memory ([`MemoryRedis`], no
//!   `redis-server`, a clock the test moves), on a real Redis, or disabled;
//! - [`TestCache::run`] and [`crate::spawn`]: the scope the macros find, in every task the test
//!   starts, with a WARN naming any function called outside it;
//! - [`record`]: how each read was answered; [`TestCache::stored`]: what is stored, with its TTL;
//! - [`TestRedis`]: a `redis-server` on a free port, killed when dropped and when the test
//!   process exits.

mod memory;
mod record;
mod test_cache;
mod test_redis;

pub use memory::MemoryRedis;
pub use record::{Outcome, Read, Tier, record};
pub(crate) use record::{carry_recorder, recorded};
pub use test_cache::{StoredValue, TestCache};
pub use test_redis::{TestRedis, TestRedisError};

/// Why a [`TestCache`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// No loopback port for the in-memory Redis.
    #[error("cannot start the in-memory Redis: {0}")]
    Io(#[source] std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Cache(#[from] crate::error::CacheError),
}
