//! Cost of invalidation calls: an id with its variants, a whole entity and a tag, with the
//! rest of the keyspace small and then 200,000 keys larger, to show that the cost follows the
//! entity, not Redis.
//!
//! `cargo bench -p cache-tests --bench invalidation`

use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheConfig, Ttl};
use cache_tests::RedisServer;

const IDS: u32 = 1_000;

async fn fill(cache: &Cache) {
    let products = cache.entity("product").expect("entity");
    for id in 0..IDS {
        cache
            .set(&products.key(&id), &id, Ttl::Long)
            .await
            .expect("set");
        for page in ["p1", "p2", "p3"] {
            cache
                .set(&products.variant_key(&id, page), &id, Ttl::Long)
                .await
                .expect("set");
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn measure(cache: &Cache, label: &str) {
    let products = cache.entity("product").expect("entity");
    fill(cache).await;
    let mut per_id = Vec::new();
    for id in 0..IDS {
        let started = Instant::now();
        assert_eq!(cache.invalidate_id(&products, &id).await.expect("id"), 4);
        per_id.push(started.elapsed());
    }
    fill(cache).await;
    let started = Instant::now();
    let removed = cache.invalidate_entity(&products).await.expect("entity");
    let entity = started.elapsed();
    assert_eq!(removed, u64::from(IDS) * 4);
    println!(
        "| {label} | {:?} | {entity:?} for {removed} keys |",
        median(per_id)
    );
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
            .operation_timeout(Duration::from_secs(5))
            .metrics_log_interval(None)
            .build()
            .expect("config");
        let cache = Cache::new(config).expect("cache");
        println!("| keyspace | invalidate_id (id + 3 variants), median | invalidate_entity |");
        println!("| --- | --- | --- |");
        measure(&cache, "the entity alone").await;
        let mut conn = redis::Client::open(server.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        for chunk in 0..200 {
            let mut pipe = redis::pipe();
            for i in 0..1_000 {
                pipe.cmd("SET")
                    .arg(format!("other:v1:thing:{chunk}:{i}"))
                    .arg(1)
                    .ignore();
            }
            let () = pipe.query_async(&mut conn).await.expect("fill");
        }
        // Let Redis finish rehashing its grown key table, which would otherwise be charged to
        // whatever command runs next.
        tokio::time::sleep(Duration::from_secs(3)).await;
        measure(&cache, "+ 200,000 other keys").await;
    });
}
