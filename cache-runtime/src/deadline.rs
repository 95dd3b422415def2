//! Deadlines for Redis operations, enforced by one sweeper task instead of a timer per call.
//!
//! A Tokio timer per operation costs about 7 % of hit-path throughput (BENCHMARKS.md): every
//! pending timer makes each turn of the runtime's time driver do work. Here a call that is still
//! pending after its first poll registers its waker in a shared table; a sweeper ticking every
//! tenth of the timeout wakes the overdue ones. Deadlines are counted in sweeper ticks, not read
//! from the clock per call: a call gives up between `timeout` and `timeout + tick` after it
//! started, and if the sweeper runs late, later, never earlier.
//!
//! The table is split in shards, each thread registering in its own: one shared lock taken
//! twice per call bounced between cores and cost multi-thread runtimes throughput.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Shards of the table: enough that threads rarely share one.
const SHARDS: usize = 16;

/// One shard, on its own cache lines so that threads using neighbouring shards do not contend.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<Table>);

/// The table of pending calls, shared with the sweeper.
#[derive(Debug)]
pub(crate) struct Deadlines {
    shards: Arc<[Shard]>,
    /// Whole ticks in one timeout.
    ticks_per_timeout: u64,
    tick: Duration,
}

#[derive(Debug, Default)]
struct Table {
    /// Sweeps so far.
    tick: u64,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

#[derive(Debug)]
struct Entry {
    /// The sweep at which the call is overdue.
    expires_at_tick: u64,
    waker: Waker,
    expired: bool,
}

/// The operation did not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

impl Deadlines {
    /// A table for calls bounded by `timeout`; spawn [`Self::sweeper`] to enforce them.
    pub(crate) fn new(timeout: Duration) -> Self {
        let shards = (0..SHARDS).map(|_| Shard::default()).collect();
        let tick = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(50));
        let ticks_per_timeout =
            u64::try_from(timeout.as_nanos().div_ceil(tick.as_nanos().max(1))).unwrap_or(u64::MAX);
        Self {
            shards,
            ticks_per_timeout,
            tick,
        }
    }

    /// The sweeper's task (it ends by itself when the table is dropped); spawned again if the
    /// runtime it ran on has shut down.
    pub(crate) fn sweeper(&self) -> impl Future<Output = ()> + Send + 'static {
        sweep(Arc::downgrade(&self.shards), self.tick)
    }

    /// `future`, failing with [`Elapsed`] once the timeout has passed.
    pub(crate) fn bound<F: Future>(&self, future: F) -> Bounded<'_, F> {
        Bounded {
            future,
            deadlines: self,
            slot: None,
        }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Table> {
        lock(&self.shards[shard].0)
    }
}

fn own_shard() -> usize {
    crate::thread_shard::index(SHARDS)
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // Entries are plain data; a panic elsewhere cannot leave them half-written.
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn sweep(shards: Weak<[Shard]>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(shards) = shards.upgrade() else {
            return;
        };
        for shard in shards.iter() {
            let mut table = lock(&shard.0);
            table.tick += 1;
            let now = table.tick;
            for entry in table.entries.iter_mut().flatten() {
                if !entry.expired && entry.expires_at_tick <= now {
                    entry.expired = true;
                    entry.waker.wake_by_ref();
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A future bounded by a deadline; see [`Deadlines::bound`].
    pub(crate) struct Bounded<'a, F> {
        #[pin]
        future: F,
        deadlines: &'a Deadlines,
        // (shard, index in it) once registered.
        slot: Option<(usize, usize)>,
    }

    impl<'a, F> PinnedDrop for Bounded<'a, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((shard, slot)) = this.slot.take() {
                let mut table = this.deadlines.lock(shard);
                table.entries[slot] = None;
                table.free.push(slot);
            }
        }
    }
}

impl<F: Future> Future for Bounded<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        // A future stays in the shard it registered in, whichever thread polls it later.
        let shard = this.slot.map_or_else(own_shard, |(shard, _)| shard);
        let mut table = this.deadlines.lock(shard);
        match *this.slot {
            Some((_, slot)) => {
                let Some(entry) = table.entries[slot].as_mut() else {
                    return Poll::Pending;
                };
                if entry.expired {
                    return Poll::Ready(Err(Elapsed));
                }
                if !entry.waker.will_wake(cx.waker()) {
                    entry.waker = cx.waker().clone();
                }
            }
            None => {
                // The current tick is already partly over: one more makes the full timeout.
                let entry = Entry {
                    expires_at_tick: table.tick + this.deadlines.ticks_per_timeout + 1,
                    waker: cx.waker().clone(),
                    expired: false,
                };
                let slot = match table.free.pop() {
                    Some(slot) => {
                        table.entries[slot] = Some(entry);
                        slot
                    }
                    None => {
                        table.entries.push(Some(entry));
                        table.entries.len() - 1
                    }
                };
                *this.slot = Some((shard, slot));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with its sweeper running on the current runtime.
    fn started(timeout: Duration) -> Deadlines {
        let deadlines = Deadlines::new(timeout);
        tokio::spawn(deadlines.sweeper());
        deadlines
    }

    #[tokio::test]
    async fn a_quick_future_finishes() {
        let deadlines = started(Duration::from_millis(100));
        let out = deadlines
            .bound(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                7
            })
            .await;
        assert_eq!(out, Ok(7));
        assert!(
            (0..SHARDS).all(|shard| deadlines.lock(shard).entries.iter().all(Option::is_none)),
            "slot released"
        );
    }

    #[tokio::test]
    async fn a_hung_future_fails_between_the_timeout_and_one_tick_later() {
        use std::time::Instant;

        let timeout = Duration::from_millis(100);
        let deadlines = started(timeout);
        let started = Instant::now();
        let out = deadlines.bound(std::future::pending::<()>()).await;
        let took = started.elapsed();
        assert_eq!(out, Err(Elapsed));
        assert!(took >= timeout, "{took:?}");
        // One tick (10 ms) plus scheduling slack.
        assert!(took < timeout + Duration::from_millis(60), "{took:?}");
    }

    #[tokio::test]
    async fn freed_slots_are_reused() {
        let deadlines = started(Duration::from_millis(100));
        for _ in 0..10 {
            let _ = deadlines.bound(tokio::task::yield_now()).await;
        }
        assert!(deadlines.lock(own_shard()).entries.len() <= 1);
    }
}
