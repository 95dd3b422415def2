//! A local-tier hit through `#[cached]` for a 1 KiB value, next to what a hand-written
//! in-process cache does for the same value (a `quick_cache` get of the encoded bytes under
//! the same key, and their postcard decode) and a Redis hit through the same macro, timed call
//! by call on one task.
//!
//! `cargo bench -p cache-tests --bench local_hit` (the hand-written row needs the key and the
//! decode a caller would write; the ratio is the figure BENCHMARKS.md tracks)

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
        let raw: quick_cache::sync::Cache<String, std::sync::Arc<[u8]>> =
            quick_cache::sync::Cache::new(1_000);
        let encoded = postcard::to_stdvec(&product(1)).expect("encode");
        raw.insert("bench:v1:product_local:1".to_owned(), encoded.into());
        let (raw_p50, raw_p99) = time_calls(200_000, || {
            // The key built per call, as `#[cached]` builds it.
            let key = format!("bench:v1:product_local:{}", std::hint::black_box(1));
            let bytes = raw.get(&key).expect("inserted");
            std::future::ready(postcard::from_bytes::<Product>(&bytes).expect("decode"))
        })
        .await;
        let (redis_p50, redis_p99) = time_calls(20_000, || redis_product(1)).await;
        let metrics = cache.entity("product_local").expect("entity").metrics();
        assert_eq!(metrics.local_hits, 200_000, "every timed call was a local hit");
        println!("value: {size} bytes postcard");
        println!("local-tier hit via #[cached]: p50 {local_p50:?}, p99 {local_p99:?}");
        println!(
            "hand-written quick_cache get + decode: p50 {raw_p50:?}, p99 {raw_p99:?} (ratio at p50: {:.2}×)",
            local_p50.as_secs_f64() / raw_p50.as_secs_f64()
        );
        println!("Redis hit via #[cached]:      p50 {redis_p50:?}, p99 {redis_p99:?}");
    });
}
