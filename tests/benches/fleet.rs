//! The bus at fleet size: 1, 50 and 200 `Cache` instances of one app subscribed in one
//! process, idle for 10 s: Redis output bytes per second (heartbeats and echoes, the only
//! traffic), and the delay of an invalidation event from the call to `delete` to a subscriber
//! that joined after the fleet (the last in Redis's fan-out), p50 and p99 over 200 events.
//!
//! `cargo bench -p cache-tests --bench fleet` (~1 min; prints a Markdown table).

use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheConfig};
use cache_tests::RedisServer;
use futures_util::StreamExt as _;

const IDLE: Duration = Duration::from_secs(10);
const EVENTS: usize = 200;

fn instance(url: &str) -> Cache {
    let config = CacheConfig::builder()
        .redis_url(url)
        .app_prefix("fleet")
        .metrics_log_interval(None)
        .build()
        .expect("config");
    Cache::new(config).expect("cache")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure(instances: usize) -> (f64, Duration, Duration) {
    let server = RedisServer::start();
    let url = server.url();
    let fleet: Vec<Cache> = (0..instances).map(|_| instance(&url)).collect();
    let started = Instant::now();
    while !fleet.iter().all(Cache::invalidation_bus_connected) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "fleet never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Past every instance's first heartbeat.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server.info_number("stats", "total_net_output_bytes");
    tokio::time::sleep(IDLE).await;
    let after = server.info_number("stats", "total_net_output_bytes");
    let bytes_per_second = (after - before) as f64 / IDLE.as_secs_f64();

    let client = redis::Client::open(url.as_str()).expect("client");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe("fleet:%invalidations")
        .await
        .expect("subscribe");
    let mut messages = pubsub.into_on_message();
    let products = fleet[0].entity("product").expect("entity");
    let mut delays = Vec::with_capacity(EVENTS);
    for id in 0..EVENTS as u64 {
        let sent = Instant::now();
        fleet[0].delete(&products.key(&id)).await.expect("delete");
        let key = products.key(&id);
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
                .await
                .expect("event within 5 s")
                .expect("subscribed");
            let payload: String = message.get_payload().expect("payload");
            if payload.ends_with(key.as_str()) {
                break;
            }
        }
        delays.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    delays.sort();
    (
        bytes_per_second,
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
    )
}

#[tokio::main]
async fn main() {
    println!("| instances | Redis output, idle | per instance | event delay p50 | p99 |");
    println!("| --- | --- | --- | --- | --- |");
    for instances in [1, 50, 200] {
        let (bytes, p50, p99) = measure(instances).await;
        println!(
            "| {instances} | {:.1} KB/s | {:.0} B/s | {p50:.2?} | {p99:.2?} |",
            bytes / 1_000.0,
            bytes / instances as f64
        );
    }
}
