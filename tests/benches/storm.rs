//! Hot-key expiry storm: 2,000 requests/s spread over 10 hot keys with a 1 s TTL, against a
//! source that takes 50 ms, with each protection off and on. Prints loader calls and latency
//! percentiles per scenario as a Markdown table.
//!
//! `cargo bench -p cache-tests --bench storm` (`STORM_SECONDS`, default 10, sets the length).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheConfig, ReadOptions, Ttl};
use cache_tests::RedisServer;

const RATE_PER_SEC: u64 = 2_000;
const HOT_KEYS: u64 = 10;
const TTL: Duration = Duration::from_secs(1);
const LOAD_TIME: Duration = Duration::from_millis(50);

#[derive(Clone, Copy)]
enum Scenario {
    HandWritten,
    Cache { leases: bool, options: ReadOptions },
}

async fn source(calls: &AtomicU64, id: u64) -> Result<String, String> {
    calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LOAD_TIME).await;
    Ok(format!("value of {id}"))
}

async fn request(
    scenario: Scenario,
    cache: &Cache,
    raw: &mut redis::aio::MultiplexedConnection,
    calls: &AtomicU64,
    id: u64,
) {
    match scenario {
        Scenario::HandWritten => {
            let key = format!("raw:{id}");
            let hit: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(raw)
                .await
                .expect("GET");
            if hit.is_none() {
                let value = source(calls, id).await.expect("source");
                let ttl_ms = u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX);
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(raw)
                    .await
                    .expect("SET");
            }
        }
        Scenario::Cache { options, .. } => {
            let key = cache.entity("hot").expect("entity").key(&id);
            cache
                .get_or_set_with(&key, options, || source(calls, id))
                .await
                .expect("value");
        }
    }
}

async fn run(server: &RedisServer, name: &str, scenario: Scenario, seconds: u64) {
    let leases = matches!(scenario, Scenario::Cache { leases: true, .. });
    let cache = Cache::new(
        CacheConfig::builder()
            .redis_url(server.url())
            .app_prefix(format!("storm{}", rand_suffix()))
            .jitter_percent(0) // keys written together expire together: the worst case
            .operation_timeout(Duration::from_secs(1))
            .lease_ttl(leases.then_some(Duration::from_secs(2)))
            .metrics_log_interval(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let raw = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut raw.clone())
        .await
        .expect("flush");
    let calls = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let per_tick = RATE_PER_SEC / 1_000;
    let mut sent = 0u64;
    let mut tasks = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        for _ in 0..per_tick {
            let (cache, mut raw, calls, latencies) =
                (cache.clone(), raw.clone(), calls.clone(), latencies.clone());
            let id = sent % HOT_KEYS;
            sent += 1;
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                request(scenario, &cache, &mut raw, &calls, id).await;
                latencies.lock().expect("lock").push(t.elapsed());
            }));
        }
    }
    for task in tasks {
        task.await.expect("task");
    }
    let mut latencies = latencies.lock().expect("lock").clone();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "| {name} | {sent} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
        calls.load(Ordering::Relaxed),
        pct(50).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn rand_suffix() -> u32 {
    std::process::id()
}

fn main() {
    let seconds: u64 = std::env::var("STORM_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = RedisServer::start();
        let ttl = ReadOptions::new(Ttl::Fixed(TTL));
        println!(
            "{RATE_PER_SEC} requests/s over {HOT_KEYS} keys, TTL {TTL:?}, source {LOAD_TIME:?}, {seconds} s per scenario\n"
        );
        println!("| scenario | requests | loader calls | p50 | p99 | max |");
        println!("| --- | --- | --- | --- | --- | --- |");
        let scenarios = [
            ("hand-written cache-aside, no protection", Scenario::HandWritten),
            ("single flight (lease off)", Scenario::Cache { leases: false, options: ttl }),
            ("single flight + lease", Scenario::Cache { leases: true, options: ttl }),
            (
                "+ stale-while-revalidate (5 s grace)",
                Scenario::Cache { leases: true, options: ttl.stale(Duration::from_secs(5)) },
            ),
            (
                "+ stale + early refresh (β = 1)",
                Scenario::Cache {
                    leases: true,
                    options: ttl.stale(Duration::from_secs(5)).early_refresh(1.0),
                },
            ),
        ];
        for (name, scenario) in scenarios {
            run(&server, name, scenario, seconds).await;
        }
    });
}
