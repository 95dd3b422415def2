//! The shared part of the runtime suite, on the in-memory Redis of `cache_runtime::testing`:
//! the same test modules as `tests/runtime`, so the two backends cannot drift apart.
#![deny(warnings, clippy::all)]

#[path = "../runtime/cache_aside.rs"]
mod cache_aside;
#[path = "../runtime/freshness.rs"]
mod freshness;
#[path = "../runtime/helpers.rs"]
mod helpers;
#[path = "../runtime/invalidation_marks.rs"]
mod invalidation_marks;
#[path = "../runtime/leases.rs"]
mod leases;
#[path = "../runtime/stampede.rs"]
mod stampede;
#[path = "../runtime/tags.rs"]
mod tags;

pub use cache_tests::MemoryServer as RedisServer;
pub use helpers::*;
