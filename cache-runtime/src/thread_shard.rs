//! Which shard of a per-thread-sharded structure the calling thread uses.
//!
//! State written on every call (counters, the deadline table) is split in shards so that two
//! cores do not keep taking the same cache line from each other; each thread keeps to its own.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The calling thread's shard among `shards`: threads are numbered in turn as they first ask,
/// so the worker threads of a runtime land on different shards.
pub(crate) fn index(shards: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|number| *number % shards.max(1))
}
