//! A local-tier hit through `#[cached]` for a 1 KiB value, next to a Redis hit through the same
//! macro, timed call by call on one task.
//!
//! `cargo bench -p cache-tests --bench local_hit`

mod product;

use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheConfig, cached};
use cache_tests::RedisServer;
use product::{Product, product};

#[cached(entity = "product_local", ttl = "long", key = "{id}", local)]
async fn local_product(id: u64) -> Product {
    product(id)
}

#[cached(entity = "product_redis", ttl = "long", key = "{id}")]
async fn redis_product(id: u64) -> Product {
    product(id)
}

async fn time_calls<F, Fut>(calls: usize, mut call: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Product>,
{
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        std::hint::black_box(call().await);
        samples.push(started.elapsed());
    }
    samples.sort();
    (samples[calls / 2], samples[calls * 99 / 100])
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = RedisServer::start();
    runtime.block_on(async {
        let config = CacheConfig::builder()
            .redis_url(server.url())
            .app_prefix("bench")
            .metrics_log_interval(None)
            .build()
            .expect("config");
        let cache = Cache::new(config).expect("cache");
        while !cache.invalidation_bus_connected() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cache_runtime::install(cache.clone()).expect("install");
        let size = postcard::to_stdvec(&product(1)).expect("encode").len();
        local_product(1).await;
        redis_product(1).await;
        let (local_p50, local_p99) = time_calls(200_000, || local_product(1)).await;
        let (redis_p50, redis_p99) = time_calls(20_000, || redis_product(1)).await;
        let metrics = cache.entity("product_local").expect("entity").metrics();
        assert_eq!(metrics.local_hits, 200_000, "every timed call was a local hit");
        println!("value: {size} bytes postcard");
        println!("local-tier hit via #[cached]: p50 {local_p50:?}, p99 {local_p99:?} (target p50 <= 1 µs)");
        println!("Redis hit via #[cached]:      p50 {redis_p50:?}, p99 {redis_p99:?}");
    });
}
