//! What every test module of the runtime suites uses, on either backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::RedisServer;
use cache_runtime::{Cache, CacheConfig, CacheConfigBuilder};

/// A builder for a cache on `server` with the app prefix `test` and quiet logs.
pub fn config(server: &RedisServer) -> CacheConfigBuilder {
    CacheConfig::builder()
        .redis_url(server.url())
        .app_prefix("test")
        .metrics_log_interval(None)
}

pub fn cache(server: &RedisServer) -> Cache {
    Cache::new(config(server).build().expect("valid config")).expect("cache")
}

/// A loader that counts its calls and returns `value`.
#[derive(Debug, Clone, Default)]
pub struct CountingLoader {
    calls: Arc<AtomicUsize>,
}

impl CountingLoader {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub async fn load<T>(&self, value: T) -> Result<T, std::io::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(value)
    }
}

pub const SHORT: Duration = Duration::from_millis(200);

/// Cuts every invalidation subscription on `server` for good: the subscribers are killed and
/// the default user may no longer subscribe.
pub fn cut_the_bus(server: &RedisServer) {
    let _: () = server.query(
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("-subscribe")
            .arg("-psubscribe"),
    );
    let _: i64 = server.query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"));
}

/// Waits until every cache in `caches` receives invalidation events (at most 2 s).
pub async fn subscribed(caches: &[&Cache]) {
    let started = Instant::now();
    while !caches.iter().all(|c| c.invalidation_bus_connected()) {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
