//! How a read-through call behaves: its options, and what its caller already knows.

use crate::freshness::ReadOptions;
use crate::ttl::Ttl;

/// How a read-through call caches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    pub(crate) options: ReadOptions,
    /// Cache absences for this long (negative caching); `None` leaves them uncached.
    pub(crate) negative_ttl: Option<Ttl>,
    /// Skip the read and overwrite with a fresh value.
    pub(crate) refresh: bool,
    /// Tags the stored value carries, rendered.
    pub(crate) tags: &'a [String],
    /// What the caller already learnt from Redis, so the read is not repeated.
    pub(crate) known: Option<Known>,
    /// For a refresh: the lease it claimed, which it stores under (without one it overwrites).
    pub(crate) lease: Option<&'a str>,
}

/// What a caller already knows about a key before reading through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// Redis holds nothing usable.
    Miss,
    /// Redis did not answer.
    Unavailable,
}

impl Policy<'_> {
    pub(crate) fn new(options: ReadOptions) -> Self {
        Self {
            options,
            negative_ttl: None,
            refresh: false,
            tags: &[],
            known: None,
            lease: None,
        }
    }
}
