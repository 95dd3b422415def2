//! Cache-aside in front of a slow source, printing hits, misses and source calls.
//!
//! Run with `cargo run -p cache-examples --bin quickstart`. Reads `CACHE_*` environment
//! variables (default Redis: redis://127.0.0.1:6379); completes with a clear message when
//! Redis is unreachable, because the cache never fails a call the source can answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheConfig, Ttl};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u32,
}

/// Stands in for a database: every call costs 40 ms.
#[derive(Debug, Default)]
struct SlowSource {
    calls: AtomicU64,
}

impl SlowSource {
    async fn product(&self, id: u64) -> Result<Product, std::io::Error> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok(Product {
            id,
            name: format!("product #{id}"),
            price_cents: 990 + u32::try_from(id % 100).unwrap_or(0) * 100,
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let mut builder = CacheConfig::from_env()?;
    if std::env::var_os("CACHE_APP_PREFIX").is_none() {
        builder = builder.app_prefix("quickstart");
    }
    let config = builder.build()?;
    println!("cache: {}", config.redacted_redis_url());
    let cache = Cache::new(config)?;
    let products = cache.entity("product")?;
    let source = SlowSource::default();
    let ids = 1..=5u64;

    // Start cold so every run shows the same picture.
    for id in ids.clone() {
        let _ = cache.delete(&products.key(&id)).await;
    }

    for round in 1..=3 {
        let calls_before = source.calls.load(Ordering::Relaxed);
        let started = Instant::now();
        for id in ids.clone() {
            let key = products.key(&id);
            let product = cache
                .get_or_set(&key, Ttl::Medium, || source.product(id))
                .await?;
            debug_assert_eq!(product.id, id);
        }
        println!(
            "round {round}: {} reads in {:>6.1} ms, {} source calls",
            ids.clone().count(),
            started.elapsed().as_secs_f64() * 1000.0,
            source.calls.load(Ordering::Relaxed) - calls_before,
        );
    }

    let m = products.metrics();
    println!(
        "product: {} hits, {} misses, {} source calls, {} fallbacks, hit ratio {}",
        m.hits,
        m.misses,
        m.loader_calls,
        m.fallbacks,
        m.hit_ratio()
            .map_or_else(|| "-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
    );
    if m.fallbacks > 0 {
        println!(
            "Redis was unreachable (breaker {:?}): every read went to the source and still succeeded.",
            cache.breaker_state()
        );
    }
    Ok(())
}
