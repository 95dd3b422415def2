//! Load benchmark of the Redis-hit path: `Cache::get_or_set` against hand-written redis-rs
//! `GET` + postcard decode of the same 1 KiB value, in the same run, on the same server; and
//! the overhead an open breaker adds to a source call.
//!
//! `cargo bench -p cache-tests --bench hit_path` (prints a Markdown table).

mod product;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{BreakerState, Cache, CacheConfig, Ttl};
use cache_tests::RedisServer;
use product::{Product, product};

const ROUND: Duration = Duration::from_secs(2);
/// Rounds alternate between the two paths; the summary is the median ratio, since a shared
/// virtual machine has noisy rounds.
const ROUNDS: usize = 5;
const TASKS: usize = 64;

/// The id of the one product read.
const ID: u64 = 42;

/// One way of reading the cached product.
trait Reader: Clone + Send + Sync + 'static {
    fn read(&self) -> impl std::future::Future<Output = Product> + Send;
}

#[derive(Clone)]
struct ThroughCache {
    cache: Cache,
    key: cache_runtime::CacheKey,
    loader_calls: Arc<AtomicU64>,
}

impl Reader for ThroughCache {
    async fn read(&self) -> Product {
        self.cache
            .get_or_set(&self.key, Ttl::Long, || async {
                self.loader_calls.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::io::Error>(product(ID))
            })
            .await
            .expect("value")
    }
}

#[derive(Clone)]
struct HandWritten {
    conn: redis::aio::MultiplexedConnection,
}

impl Reader for HandWritten {
    async fn read(&self) -> Product {
        let mut conn = self.conn.clone();
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg("raw:product:42")
            .query_async(&mut conn)
            .await
            .expect("GET");
        postcard::from_bytes(&bytes).expect("decode")
    }
}

async fn throughput(reader: impl Reader) -> f64 {
    let ops = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + ROUND;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (reader, ops) = (reader.clone(), ops.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    std::hint::black_box(reader.read().await);
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    ops.load(Ordering::Relaxed) as f64 / ROUND.as_secs_f64()
}

async fn latency(reader: impl Reader) -> (Duration, Duration) {
    let mut samples = Vec::new();
    let deadline = Instant::now() + ROUND;
    while Instant::now() < deadline {
        let started = Instant::now();
        std::hint::black_box(reader.read().await);
        samples.push(started.elapsed());
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn main() {
    // One client thread leaves the second core to redis-server, so the figures measure
    // client-side cost rather than how the two processes happen to share the cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let mut server = RedisServer::start();
    let config = CacheConfig::builder()
        .redis_url(server.url())
        .app_prefix("bench")
        .operation_timeout(Duration::from_secs(1))
        .pool_size(
            std::env::var("BENCH_POOL_SIZE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(cache_runtime::DEFAULT_POOL_SIZE),
        )
        .metrics_log_interval(None)
        .build()
        .expect("config");
    let cache = Cache::new(config).expect("cache");
    let key = cache.entity("product").expect("entity").key(&42u64);
    cache
        .set(&key, &product(ID), Ttl::Long)
        .await
        .expect("seed");
    let through_cache = ThroughCache {
        cache: cache.clone(),
        key,
        loader_calls: Arc::default(),
    };
    let client = redis::Client::open(server.url()).expect("client");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let hand_written = HandWritten { conn };
    let encoded = postcard::to_stdvec(&product(ID)).expect("encode");
    let _: () = redis::cmd("SET")
        .arg("raw:product:42")
        .arg(&encoded)
        .query_async(&mut hand_written.conn.clone())
        .await
        .expect("seed raw");
    assert_eq!(hand_written.read().await, through_cache.read().await);
    println!("value: {} bytes postcard", encoded.len());

    println!(
        "| round | hand-written ops/s (64 tasks) | cache ops/s | ratio | hand-written p50 / p99 (1 task) | cache p50 / p99 | p50 ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let (mut tp_ratios, mut p50_ratios) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let raw_tp = throughput(hand_written.clone()).await;
        let cache_tp = throughput(through_cache.clone()).await;
        let (raw_p50, raw_p99) = latency(hand_written.clone()).await;
        let (cache_p50, cache_p99) = latency(through_cache.clone()).await;
        tp_ratios.push(cache_tp / raw_tp);
        p50_ratios.push(cache_p50.as_secs_f64() / raw_p50.as_secs_f64());
        println!(
            "| {round} | {raw_tp:.0} | {cache_tp:.0} | {:.3} | {raw_p50:?} / {raw_p99:?} | {cache_p50:?} / {cache_p99:?} | {:.3} |",
            cache_tp / raw_tp,
            cache_p50.as_secs_f64() / raw_p50.as_secs_f64(),
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "\nmedian ratios: throughput {:.3} (target >= 0.95), p50 latency {:.3} (target <= 1.1)",
        median(&mut tp_ratios),
        median(&mut p50_ratios)
    );
    assert_eq!(
        through_cache.loader_calls.load(Ordering::Relaxed),
        0,
        "all hits"
    );

    breaker_open_overhead(&mut server, &through_cache).await;
}

/// Time per call of the source alone, and through `get_or_set` with the breaker open.
async fn breaker_open_overhead(server: &mut RedisServer, reader: &ThroughCache) {
    server.stop();
    while reader.cache.breaker_state() != BreakerState::Open {
        reader.read().await;
    }
    const CALLS: u32 = 1_000_000;
    let source = || async { Ok::<_, std::io::Error>(std::hint::black_box(42u64)) };
    let started = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(source().await.expect("source"));
    }
    let direct = started.elapsed() / CALLS;
    let started = Instant::now();
    for _ in 0..CALLS {
        let value = reader
            .cache
            .get_or_set(&reader.key, Ttl::Long, source)
            .await
            .expect("source");
        std::hint::black_box(value);
    }
    let through = started.elapsed() / CALLS;
    println!(
        "\nbreaker open: source alone {direct:?}/call, through get_or_set {through:?}/call, added {:?}",
        through.saturating_sub(direct)
    );
}
