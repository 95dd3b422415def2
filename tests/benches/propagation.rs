//! Cross-process invalidation: how long from `delete` returning in this process to the entry
//! leaving the local tier of another process (`bus_listener`), over 1,000 events; on one Redis,
//! then on a 3 + 3 Redis Cluster (the event published by the key's master after the delete and
//! its replica's `WAIT`, the other process subscribed on a replica).
//!
//! `cargo bench -p cache-tests --bench propagation`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::{Cache, CacheConfig};
use cache_tests::{RedisCluster, RedisServer};

const EVENTS: u32 = 1_000;
/// Far above the delays measured, so each eviction pairs with its own event.
const GAP: Duration = Duration::from_millis(3);

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

fn main() {
    let server = RedisServer::start();
    println!("one Redis:");
    measure(&server.url());
    let cluster = RedisCluster::start();
    println!("Redis Cluster, 3 masters + 3 replicas:");
    measure(&cluster.url());
}

fn measure(url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut listener = Command::new(env!("CARGO_BIN_EXE_bus_listener"))
        .args([url.to_owned(), EVENTS.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bus_listener");
    let mut lines = BufReader::new(listener.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));

    let (started, sent): (Vec<u128>, Vec<u128>) = runtime.block_on(async {
        let config = CacheConfig::builder()
            .redis_url(url)
            .app_prefix("bus")
            .local_tier_bytes(None)
            .metrics_log_interval(None)
            .build()
            .expect("config");
        let cache = Cache::new(config).expect("cache");
        let products = cache.entity("product").expect("entity");
        let (mut started, mut sent) = (Vec::new(), Vec::new());
        for id in 0..EVENTS {
            started.push(now_us());
            cache.delete(&products.key(&id)).await.expect("delete");
            sent.push(now_us());
            tokio::time::sleep(GAP).await;
        }
        (started, sent)
    });
    let evicted: Vec<u128> = lines
        .map_while(Result::ok)
        .filter_map(|l| l.parse().ok())
        .collect();
    assert!(listener.wait().expect("wait").success());
    assert_eq!(
        evicted.len(),
        sent.len(),
        "every event reached the other process"
    );
    report("delete called   -> evicted elsewhere", &started, &evicted);
    report("delete returned -> evicted elsewhere", &sent, &evicted);
}

fn report(what: &str, from: &[u128], to: &[u128]) {
    let mut delays: Vec<i128> = from
        .iter()
        .zip(to)
        .map(|(f, t)| i128::try_from(*t).unwrap_or(0) - i128::try_from(*f).unwrap_or(0))
        .collect();
    delays.sort_unstable();
    let pct = |p: usize| delays[(delays.len() * p / 100).min(delays.len() - 1)];
    println!(
        "{what}: p50 {} µs, p99 {} µs, max {} µs over {} events",
        pct(50),
        pct(99),
        delays.last().copied().unwrap_or(0),
        delays.len()
    );
}
