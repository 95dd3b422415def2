//! The cache's background tasks: the invalidation subscriber, the replay of pending
//! invalidations, the metrics report, the deadline sweeper and a cluster's slot table.
//!
//! They run on the Tokio runtime the cache was created in. If that runtime shuts down while
//! the cache lives on (a cache built in a short-lived runtime and used from another, a static
//! shared by tests), the tasks are dropped with it: deadlines would never fire, events would
//! never arrive, and the backlog would never be replayed. Each task therefore holds a watch that,
//! when dropped, marks the tasks as gone (and a dropped subscriber as disconnected, which turns
//! the local tier off and makes marks be read from Redis). The next Redis call notices and
//! starts them again on the runtime it runs on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{Cache, Inner, replay};
use crate::bus;
use crate::cluster::{REFRESH_EVERY, REFRESH_WHILE_DEGRADED};
use crate::report;

/// Whether the background tasks run.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    alive: AtomicBool,
    /// One restart at a time.
    restarting: Mutex<()>,
}

/// Held by a running task; its drop (the task ended, or its runtime shut down) is noticed.
struct Watch {
    cache: Weak<Inner>,
    subscriber: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(inner) = self.cache.upgrade() {
            inner.tasks.alive.store(false, Ordering::Release);
            if self.subscriber {
                inner.subscriber_stopped();
            }
        }
    }
}

/// Starts every background task of `inner` on `runtime`.
pub(crate) fn spawn_all(inner: &Arc<Inner>, runtime: &tokio::runtime::Handle) {
    let watch = |subscriber| Watch {
        cache: Arc::downgrade(inner),
        subscriber,
    };
    let weak = Arc::downgrade(inner);
    inner.tasks.alive.store(true, Ordering::Release);
    let sweeper = inner.deadlines.sweeper();
    let sweeper_watch = watch(false);
    runtime.spawn(async move {
        let _watch = sweeper_watch;
        sweeper.await;
    });
    if let Some(interval) = inner.config.metrics_log_interval {
        let (weak, watch) = (weak.clone(), watch(false));
        runtime.spawn(async move {
            let _watch = watch;
            report::run(weak, interval).await;
        });
    }
    #[cfg(feature = "metrics")]
    {
        let (weak, watch) = (weak.clone(), watch(false));
        runtime.spawn(async move {
            let _watch = watch;
            crate::export::run(weak).await;
        });
    }
    let (replay_weak, replay_watch) = (weak.clone(), watch(false));
    runtime.spawn(async move {
        let _watch = replay_watch;
        replay::run(replay_weak).await;
    });
    let (topology_weak, topology_watch) = (weak.clone(), watch(false));
    runtime.spawn(async move {
        let _watch = topology_watch;
        refresh_topology(topology_weak).await;
    });
    // Every instance listens: invalidation marks are kept current through the bus, not only
    // the local tier.
    let channels = vec![inner.channel.clone(), inner.echo_channel.clone()];
    let (subscriber_watch, wanted) = (watch(true), inner.hearing.changed());
    runtime.spawn(async move {
        let _watch = subscriber_watch;
        bus::subscribe(weak, channels, wanted).await;
    });
}

/// Reads a cluster's slot table every [`REFRESH_EVERY`], every [`REFRESH_WHILE_DEGRADED`]
/// while a master is unreachable or a slot uncovered, until the cache is dropped.
async fn refresh_topology(cache: Weak<Inner>) {
    loop {
        let pause = match cache.upgrade() {
            None => return,
            Some(inner) => match inner.redis.found_cluster() {
                Some(cluster) if cluster.degraded() => REFRESH_WHILE_DEGRADED,
                _ => REFRESH_EVERY,
            },
        };
        tokio::time::sleep(pause).await;
        let Some(inner) = cache.upgrade() else { return };
        if let Some(cluster) = inner.redis.found_cluster()
            && let Err(error) = cluster.refresh(cluster.generation()).await
        {
            tracing::debug!(%error, "could not read the cluster's slots");
        }
    }
}

impl Cache {
    /// Starts the background tasks again on the current runtime if theirs has shut down.
    pub(crate) fn keep_tasks_alive(&self) {
        let inner = &self.inner;
        if inner.tasks.alive.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let _restarting = inner
            .tasks
            .restarting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.tasks.alive.load(Ordering::Acquire) {
            return;
        }
        tracing::warn!(
            "the runtime the cache's background tasks ran on has shut down: starting them on this one"
        );
        spawn_all(inner, &runtime);
    }
}
