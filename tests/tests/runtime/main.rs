//! Behaviour of the cache runtime against real `redis-server` processes.
#![deny(warnings, clippy::all)]

mod batch_reads;
mod cache_aside;
mod cluster;
mod degraded;
mod eviction;
mod failures;
mod freshness;
mod gate;
mod get_or_set_many;
mod global;
mod history;
mod invalidation_marks;
mod leases;
mod macros;
mod metrics_log;
mod operations;
mod rate_limit;
mod redis_conf;
mod replay;
mod scripts;
mod sessions;
mod stampede;
mod stored_values;
mod tags;
mod testing_support;
mod tls;
mod two_tiers;

#[path = "helpers.rs"]
mod helpers;

pub use cache_tests::RedisServer;
pub use helpers::*;
