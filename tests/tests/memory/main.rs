//! The shared part of the runtime suite, on the in-memory Redis of `cache_runtime::testing`:
//! the same test modules as `tests/runtime`, so the two backends cannot drift apart. Modules
//! that need what only a real server has (persistence, eviction, replication, output-buffer
//! limits, TLS, cluster) are not here.
#![deny(warnings, clippy::all)]

#[path = "../runtime/cache_aside.rs"]
mod cache_aside;
#[path = "../runtime/freshness.rs"]
mod freshness;
#[path = "../runtime/get_or_set_many.rs"]
mod get_or_set_many;
#[path = "../runtime/helpers.rs"]
mod helpers;
#[path = "../runtime/invalidation_marks.rs"]
mod invalidation_marks;
#[path = "../runtime/leases.rs"]
mod leases;
#[path = "../runtime/rate_limit.rs"]
mod rate_limit;
mod round_trips;
#[path = "../runtime/scripts.rs"]
mod scripts;
#[path = "../runtime/sessions.rs"]
mod sessions;
#[path = "../runtime/stampede.rs"]
mod stampede;
#[path = "../runtime/stored_values.rs"]
mod stored_values;
#[path = "../runtime/tags.rs"]
mod tags;

pub use cache_tests::MemoryServer as RedisServer;
pub use helpers::*;
