//! Tag marks held in process: what a hit costs Redis when the tags in use outgrow the 100,000
//! marks an instance keeps. Each key carries a tag of its own; after a warm-up pass, one pass
//! of hits over every key counts the marks read from Redis (`GET` + `PEXPIRE`, counted by the
//! `PEXPIRE`s in `INFO commandstats`) per hit, and the hit rate. Default configuration,
//! multi-thread runtime.
//!
//! `cargo bench -p cache-tests --bench tag_marks` (prints a Markdown table).

use std::time::Instant;

use cache_runtime::{Cache, CacheConfig, cached, with_cache};
use cache_tests::RedisServer;

/// Tasks reading at once.
const TASKS: u32 = 64;

#[cached(entity = "tagged", key = "{id}", tags = ["t:{id}"])]
async fn tagged(id: u32) -> u32 {
    id
}

/// Reads ids `0..count` once, from [`TASKS`] tasks.
async fn read_all(cache: &Cache, count: u32) {
    let readers: Vec<_> = (0..TASKS)
        .map(|task| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for id in (task..count).step_by(TASKS as usize) {
                    assert_eq!(with_cache(cache.clone(), tagged(id)).await, id);
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.expect("reader");
    }
}

#[tokio::main]
async fn main() {
    println!("| distinct tags in use | mark reads per hit | hits/s |");
    println!("| --- | --- | --- |");
    for tags in [50_000u32, 100_000, 150_000, 400_000] {
        let server = RedisServer::start();
        let config = CacheConfig::builder()
            .redis_url(server.url())
            .app_prefix("bench")
            .metrics_log_interval(None)
            .build()
            .expect("config");
        let cache = Cache::new(config).expect("cache");
        read_all(&cache, tags).await;
        let misses_before: u64 = cache.metrics().iter().map(|m| m.misses).sum();
        let marks_before = server.command_calls("pexpire");
        let started = Instant::now();
        read_all(&cache, tags).await;
        let took = started.elapsed();
        let mark_reads = server.command_calls("pexpire") - marks_before;
        let misses: u64 = cache.metrics().iter().map(|m| m.misses).sum::<u64>() - misses_before;
        assert_eq!(misses, 0, "the second pass is all hits");
        println!(
            "| {tags} | {:.2} | {:.0}k |",
            mark_reads as f64 / f64::from(tags),
            f64::from(tags) / took.as_secs_f64() / 1000.0
        );
    }
}
