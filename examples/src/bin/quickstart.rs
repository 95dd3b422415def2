//! Cache-aside in front of a slow source with the macros, printing hits, misses and source
//! calls, then a write that invalidates.
//!
//! Run with `cargo run -p cache-examples --bin quickstart`. Reads `CACHE_*` environment
//! variables (default Redis: redis://127.0.0.1:6379); completes with a clear message when
//! Redis is unreachable, because the cache never fails a call the source can answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheConfig, cached, invalidates};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u32,
}

#[derive(Debug)]
struct DbError(String);

/// Stands in for a database: every query costs 40 ms.
#[derive(Debug, Default)]
struct Catalog {
    prices: Mutex<HashMap<u64, u32>>,
    queries: AtomicU64,
}

impl Catalog {
    #[cached(entity = "product", ttl = "medium", key = "{id}")]
    async fn product(&self, id: u64) -> Result<Product, DbError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(40)).await;
        let price_cents = *self
            .prices
            .lock()
            .map_err(|_| DbError("poisoned".to_owned()))?
            .entry(id)
            .or_insert(990 + u32::try_from(id % 100).unwrap_or(0) * 100);
        Ok(Product {
            id,
            name: format!("product #{id}"),
            price_cents,
        })
    }

    #[invalidates(entity = "product", key = "{id}")]
    async fn set_price(&self, id: u64, price_cents: u32) -> Result<(), DbError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.prices
            .lock()
            .map_err(|_| DbError("poisoned".to_owned()))?
            .insert(id, price_cents);
        Ok(())
    }
}

async fn read_all(catalog: &Catalog, ids: &[u64], round: &str) -> Result<(), DbError> {
    let queries_before = catalog.queries.load(Ordering::Relaxed);
    let started = Instant::now();
    for id in ids {
        catalog.product(*id).await?;
    }
    println!(
        "{round:<26} {} reads in {:>6.1} ms, {} database queries",
        ids.len(),
        started.elapsed().as_secs_f64() * 1000.0,
        catalog.queries.load(Ordering::Relaxed) - queries_before,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // Defaults in code, the environment over them (CACHE_APP_PREFIX=… overrides the prefix).
    let config = CacheConfig::builder()
        .app_prefix("quickstart")
        .metrics_log_interval(None)
        .with_env()?
        .build()?;
    println!("cache: {}", config.redacted_redis_url());
    let cache = Cache::new(config)?;
    cache_runtime::install(cache.clone())?;
    let catalog = Catalog::default();
    let ids = [1, 2, 3, 4, 5];

    // Start cold so every run shows the same picture.
    let products = cache.entity("product")?;
    for id in ids {
        let _ = cache.invalidate_id(&products, &id).await;
    }

    let run = async {
        read_all(&catalog, &ids, "cold cache:").await?;
        read_all(&catalog, &ids, "warm cache:").await?;
        catalog.set_price(3, 4_999).await?;
        read_all(&catalog, &ids, "after a price change:").await?;
        let price = catalog.product(3).await?.price_cents;
        println!("product 3 now costs {price} cents (the write was not served stale)");
        Ok::<_, DbError>(())
    };
    run.await.map_err(|e| format!("database error: {}", e.0))?;

    let m = products.metrics();
    println!(
        "product: {} hits, {} misses, {} loads, {} fallbacks, hit ratio {}",
        m.hits,
        m.misses,
        m.loader_calls,
        m.fallbacks,
        m.hit_ratio()
            .map_or_else(|| "-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
    );
    if m.fallbacks > 0 {
        println!(
            "Redis was unreachable (breaker {:?}): every read went to the database and still succeeded.",
            cache.breaker_state()
        );
    }
    Ok(())
}
