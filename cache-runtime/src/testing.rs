//! Support for testing services that use the cache (feature `testing`; docs/testing.md).

mod memory;

pub use memory::MemoryRedis;
