//! Invalidation at scale, with the default configuration on a multi-thread runtime:
//!
//! - 1,000,000 small values of one entity written through `Cache::set` against the same key
//!   names and stored bytes written with plain `SET PX`: throughput and memory per key;
//! - `invalidate_entity` over them: the call's time, and the longest wait of a client sending
//!   `PING` every 5 ms meanwhile; then 10,000 sampled reads from this instance and from a
//!   second one, each of which must call its loader;
//! - a tag over 1,000,000 keys of two entities, the same way, with 10,000 untagged keys that
//!   must stay hits.
//!
//! `cargo bench -p cache-tests --bench invalidation` (prints Markdown tables).

mod common;

use std::time::{Duration, Instant};

use cache_runtime::{Cache, Entity, Ttl, cached};
use cache_tests::RedisServer;
use common::{KEYS, Pinger, TASKS, config, from_tasks};

const SAMPLE: u32 = 10_000;

/// Of `SAMPLE` ids spread over the keyspace (from `offset` on, so that two instances sample
/// different ids), how many reads of `entity` called the loader.
async fn loads_after(cache: &Cache, entity: &Entity, offset: u32) -> u32 {
    let mut loads = 0;
    for n in 0..SAMPLE {
        let id = n * (KEYS / SAMPLE) + offset;
        let _: u64 = cache
            .get_or_set(&entity.key(&id), Ttl::Long, || async {
                loads += 1;
                Ok::<_, std::io::Error>(0)
            })
            .await
            .expect("read");
    }
    loads
}

/// Waits until `cache` has heard of an invalidation of `entity` (the bus delay), at most 1 s.
async fn heard(cache: &Cache, entity: &Entity, probe: u32) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        let value: Option<u64> = cache.get(&entity.key(&probe)).await.expect("get");
        if value.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn entity_wide() {
    // Plain SET PX of the same names and bytes, on a server of its own.
    let plain_server = RedisServer::start();
    let cache_server = RedisServer::start();
    let cache = Cache::new(config(&cache_server)).expect("cache");
    let products = cache.entity("product").expect("entity");
    let ttl = Duration::from_secs(24 * 3600);

    let before = cache_server.info_number("memory", "used_memory");
    let writing = Pinger::start(&cache_server);
    let cache_time = from_tasks(KEYS, 1, {
        let (cache, products) = (cache.clone(), products.clone());
        move |i| {
            let (cache, key) = (cache.clone(), products.key(&i));
            async move {
                cache
                    .set(&key, &u64::from(i), Ttl::Fixed(ttl))
                    .await
                    .expect("set");
            }
        }
    })
    .await;
    let waited_while_writing = writing.stop();
    let cache_bytes = cache_server.info_number("memory", "used_memory") - before;

    let stored: Vec<u8> = cache_server.query(redis::cmd("GET").arg("bench:v1:product:123456"));
    let client = redis::Client::open(plain_server.url()).expect("client");
    let plain = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let before = plain_server.info_number("memory", "used_memory");
    let plain_time = from_tasks(KEYS, 1, move |i| {
        let (mut plain, stored) = (plain.clone(), stored.clone());
        async move {
            // Same key length as the cache's (`product` and `plain_a` are 7 bytes).
            let () = redis::cmd("SET")
                .arg(format!("bench:v1:plain_a:{i}"))
                .arg(stored)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut plain)
                .await
                .expect("SET");
        }
    })
    .await;
    let plain_bytes = plain_server.info_number("memory", "used_memory") - before;

    let rate = |time: Duration| f64::from(KEYS) / time.as_secs_f64();
    println!("| 1,000,000 values of one entity | `Cache::set` | plain `SET PX` | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| writes/s, {TASKS} tasks | {:.0} | {:.0} | {:.2}× |",
        rate(cache_time),
        rate(plain_time),
        rate(cache_time) / rate(plain_time)
    );
    println!(
        "| memory per key (`used_memory`) | {:.1} B | {:.1} B | {:.3}× |",
        cache_bytes as f64 / f64::from(KEYS),
        plain_bytes as f64 / f64::from(KEYS),
        cache_bytes as f64 / plain_bytes as f64
    );
    println!("| longest PING wait while writing | {waited_while_writing:?} | | |");

    // A second instance that read the entity before: its mark is known and trusted.
    let other = Cache::new(config(&cache_server)).expect("cache");
    let other_products = other.entity("product").expect("entity");
    while !other.invalidation_bus_connected() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let warm: Option<u64> = other.get(&other_products.key(&1u32)).await.expect("get");
    assert_eq!(warm, Some(1));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let pinger = Pinger::start(&cache_server);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    cache
        .invalidate_entity(&products)
        .await
        .expect("invalidate");
    let call = started.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waited = pinger.stop();
    let here = loads_after(&cache, &products, 0).await;
    heard(&other, &other_products, 1).await;
    let there = loads_after(&other, &other_products, KEYS / SAMPLE / 2).await;
    println!();
    println!("| `invalidate_entity`, 1,000,000 keys | |");
    println!("| --- | --- |");
    println!("| the call | {call:?} |");
    println!("| longest PING wait (every 5 ms, from 100 ms before to 100 ms after) | {waited:?} |");
    println!("| sampled reads that called the loader, this instance | {here} of {SAMPLE} |");
    println!("| sampled reads that called the loader, another instance | {there} of {SAMPLE} |");
}

#[cached(entity = "tagged_a", ttl = "long", key = "{id}", tags = ["bulk"])]
async fn tagged_a(id: u32) -> u64 {
    u64::from(id)
}

#[cached(entity = "tagged_b", ttl = "long", key = "{id}", tags = ["bulk"])]
async fn tagged_b(id: u32) -> u64 {
    u64::from(id)
}

#[cached(entity = "tagged_a", ttl = "long", key = "{id}", variant = "untagged")]
async fn untagged(id: u32) -> u64 {
    u64::from(id)
}

async fn tag_wide() {
    let server = RedisServer::start();
    let cache = Cache::new(config(&server)).expect("cache");
    cache_runtime::install(cache.clone()).expect("installed once");
    let fill = from_tasks(KEYS, 1, |i| async move {
        if i.is_multiple_of(2) {
            tagged_a(i).await;
        } else {
            tagged_b(i).await;
        }
    })
    .await;
    for id in 0..SAMPLE {
        untagged(id).await;
    }
    let (a, b) = (
        cache.entity("tagged_a").expect("entity"),
        cache.entity("tagged_b").expect("entity"),
    );
    let loads = |entity: &Entity| entity.metrics().loader_calls;
    let before_outside = loads(&a);
    // A second instance whose tag mark is known and trusted before the invalidation.
    let other = Cache::new(config(&server)).expect("cache");
    while !other.invalidation_bus_connected() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache_runtime::with_cache(other.clone(), tagged_a(0)).await;
    let other_b = other.entity("tagged_b").expect("entity");
    let other_a = other.entity("tagged_a").expect("entity");
    assert_eq!(loads(&other_a), 0, "a hit");

    let pinger = Pinger::start(&server);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    cache.invalidate_tag("bulk").await.expect("tag");
    let call = started.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waited = pinger.stop();

    for id in 0..SAMPLE {
        untagged(id).await;
    }
    let outside_loads = loads(&a) - before_outside;
    let (before_a, before_b) = (loads(&a), loads(&b));
    for n in 0..SAMPLE {
        let id = n * (KEYS / SAMPLE);
        if id.is_multiple_of(2) {
            tagged_a(id).await;
        } else {
            tagged_b(id).await;
        }
    }
    let tagged_loads = loads(&a) - before_a + loads(&b) - before_b;
    // The other instance, on other (odd) ids, once it has heard of the invalidation.
    let heard = Instant::now();
    while loads(&other_a) == 0 && heard.elapsed() < Duration::from_secs(1) {
        cache_runtime::with_cache(other.clone(), tagged_a(2)).await;
    }
    let before_other = loads(&other_b);
    for n in 0..SAMPLE {
        cache_runtime::with_cache(other.clone(), tagged_b(n * (KEYS / SAMPLE) + 51)).await;
    }
    let other_loads = loads(&other_b) - before_other;
    println!();
    println!("| `invalidate_tag`, 1,000,000 keys over two entities | |");
    println!("| --- | --- |");
    println!("| filling them through `#[cached]` ({TASKS} tasks) | {fill:?} |");
    println!("| the call | {call:?} |");
    println!("| longest PING wait (every 5 ms, from 100 ms before to 100 ms after) | {waited:?} |");
    println!("| sampled tagged reads that called the loader | {tagged_loads} of {SAMPLE} |");
    println!(
        "| sampled tagged reads that called the loader, another instance | {other_loads} of {SAMPLE} |"
    );
    println!(
        "| untagged reads of the same entity that called the loader | {outside_loads} of {SAMPLE} |"
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        entity_wide().await;
        tag_wide().await;
    });
}
