//! Attribute macros for cache-runtime; see the `cache-runtime` crate.
