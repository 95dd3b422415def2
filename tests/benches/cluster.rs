//! The cache on a Redis Cluster against one Redis, in one run: `#[cached]` Redis hits on a
//! 3 + 3 cluster, on one node, and redis-rs's own `ClusterConnection` (`GET` + postcard
//! decode, the peer); the hit latency at one task; `invalidate_id` latency with the replicas'
//! `WAIT` against one node.
//!
//! A 1 KiB struct under 1,000 warm keys; 1, 64 and 256 tasks; rounds interleaved, medians of
//! the per-round figures and of the per-round ratios to the peer. The seven servers (six
//! cluster nodes and the single one) share the machine's cores with the client.
//!
//! `cargo bench -p cache-tests --bench cluster` (`CLUSTER_ROUNDS`, `CLUSTER_ROUND_MS` to
//! change the 7 rounds of 1,000 ms).

mod product;
mod rounds;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheConfig, cached, with_cache};
use cache_tests::{RedisCluster, RedisServer};
use product::{Product, product};
use rounds::{Reader, env_number, hand_written, interleaved, median, print_table};

const KEYS: u64 = 1_000;

#[derive(Debug, Clone, PartialEq)]
struct BenchError;

static SOURCE_CALLS: AtomicU64 = AtomicU64::new(0);

#[cached(entity = "product", ttl = "long", key = "{id}")]
async fn ours(id: u64) -> Result<Product, BenchError> {
    SOURCE_CALLS.fetch_add(1, Ordering::Relaxed);
    Ok(product(id))
}

#[derive(Clone)]
enum Setup {
    Peer(redis::cluster_async::ClusterConnection),
    Ours(Cache),
}

impl Reader for Setup {
    async fn read(&self, id: u64) -> Product {
        match self {
            Self::Peer(conn) => hand_written(conn, id).await,
            Self::Ours(cache) => with_cache(cache.clone(), ours(id)).await.expect("ours"),
        }
    }
}

/// Percentiles (50, 99) of `call`'s latency over `n` calls from one task, in µs.
async fn latency<F, Fut>(n: u64, mut call: F) -> (f64, f64)
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut times: Vec<f64> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let started = Instant::now();
        call(i).await;
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let at = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    (at(50), at(99))
}

fn cache(url: &str) -> Cache {
    let config = CacheConfig::builder()
        .redis_url(url)
        .app_prefix("bench")
        .metrics_log_interval(None)
        .build()
        .expect("config");
    Cache::new(config).expect("cache")
}

async fn run() {
    let cluster = RedisCluster::start();
    let single = RedisServer::start();
    let on_cluster = cache(&cluster.url());
    let on_node = cache(&single.url());
    let seeds: Vec<String> = cluster.nodes().iter().map(RedisServer::url).collect();
    let mut peer = redis::cluster::ClusterClient::new(seeds)
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("cluster connection");
    for id in 0..KEYS {
        let encoded = postcard::to_stdvec(&product(id)).expect("encode");
        let _: () = redis::cmd("SET")
            .arg(format!("raw:product:{id}"))
            .arg(encoded)
            .query_async(&mut peer)
            .await
            .expect("seed");
    }
    let setups: Vec<(&str, Setup)> = vec![
        (
            "redis-rs `ClusterConnection` GET + postcard (peer)",
            Setup::Peer(peer),
        ),
        (
            "`#[cached]` on the cluster",
            Setup::Ours(on_cluster.clone()),
        ),
        ("`#[cached]` on one Redis", Setup::Ours(on_node.clone())),
    ];
    for id in 0..KEYS {
        for (_, setup) in &setups {
            assert_eq!(setup.read(id).await, product(id));
        }
    }
    let warmed = SOURCE_CALLS.load(Ordering::Relaxed);
    let rounds = env_number("CLUSTER_ROUNDS", 7).max(1) as usize;
    let round = Duration::from_millis(env_number("CLUSTER_ROUND_MS", 1_000));
    let readers: Vec<Setup> = setups.iter().map(|(_, s)| s.clone()).collect();
    let figures = interleaved(&readers, KEYS, rounds, round).await;
    assert_eq!(
        SOURCE_CALLS.load(Ordering::Relaxed),
        warmed,
        "every call a hit"
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "\nmulti-thread runtime, {cores} cores shared with 7 redis-servers, {rounds} interleaved rounds of {round:?}, medians (ratio: median of per-round ratios to the peer)\n"
    );
    let names: Vec<&str> = setups.iter().map(|(name, _)| *name).collect();
    print_table("hits/s", &names, &figures);

    // Latency at one task, the two alternating in blocks so drift hits both.
    let (mut cluster_p50, mut node_p50) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let setup = &setups[1].1;
        cluster_p50.push(
            latency(4_000, |i| async move {
                std::hint::black_box(setup.read(i % KEYS).await);
            })
            .await
            .0,
        );
        let setup = &setups[2].1;
        node_p50.push(
            latency(4_000, |i| async move {
                std::hint::black_box(setup.read(i % KEYS).await);
            })
            .await
            .0,
        );
    }
    let (cluster_p50, node_p50) = (median(&mut cluster_p50), median(&mut node_p50));
    println!(
        "\nhit latency, 1 task: p50 {cluster_p50:.1} µs on the cluster, {node_p50:.1} µs on one Redis ({:.2}×)",
        cluster_p50 / node_p50
    );

    // Invalidation latency: on the cluster each waits for its shard's replica (WAIT).
    for (name, cache) in [("cluster (WAIT 1)", &on_cluster), ("one Redis", &on_node)] {
        let products = cache.entity("product").expect("entity");
        let (p50, p99) = latency(2_000, |i| {
            let (cache, products) = (cache.clone(), products.clone());
            async move {
                cache
                    .invalidate_id(&products, &(i % KEYS))
                    .await
                    .expect("invalidate");
            }
        })
        .await;
        println!("invalidate_id on {name}: p50 {p50:.0} µs, p99 {p99:.0} µs");
    }
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}
