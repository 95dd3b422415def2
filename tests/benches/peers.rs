//! Redis-hit throughput of `#[cached]` against its peers, in one process and one run:
//! hand-written redis-rs (`GET` + postcard decode on one multiplexed connection), the `cached`
//! crate's Redis store (`#[concurrent_cached(redis = true)]`), and this project's `#[cached]`
//! with the default configuration (one connection), with a pool of 2, and with `local`.
//!
//! A 1 KiB struct under 1,000 warm keys; 1, 64 and 256 tasks calling in a loop; rounds
//! interleaved (the order rotates each round) so drift on a shared machine hits every setup
//! alike; medians of the per-round figures and of the per-round ratios to hand-written code.
//! The multi-thread runtime (`#[tokio::main]`) first; the current-thread one in a second
//! process of this binary, so each table has its own redis-server and runtime.
//!
//! Then, on the multi-thread runtime, misses (a new id each call) and writes against
//! hand-written code, the same protocol issued by hand, and the `cached` crate, and what each
//! costs the server (`operations`); then what a batch read, a session touch and a rate-limit
//! check cost it.
//!
//! `cargo bench -p cache-tests --bench peers` (`PEERS_TABLES=hits,misses,writes,others` to choose
//! tables; `PEERS_ROUNDS`, `PEERS_ROUND_MS` to change the
//! 9 rounds of 1,000 ms: rounds on a shared two-core machine differ by ±10 %, so the median
//! needs several; `PEERS_PROFILE=<row>` runs one setup alone for 10 s, for a profiler).

mod operations;
mod product;
mod rounds;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Arc;

use cache_runtime::{Cache, CacheConfig, RateLimiter, Sessions, cached};
use cache_tests::RedisServer;
use operations::Operation;
use product::{Product, product};
use rounds::{Reader, cpu_time, env_number, hand_written, interleaved, print_table, throughput};

const KEYS: u64 = 1_000;
const CHILD_ENV: &str = "PEERS_CURRENT_THREAD";

#[derive(Debug, Clone, PartialEq)]
struct BenchError(String);

/// Counts source calls: after warming, every measured call must be a hit.
static SOURCE_CALLS: AtomicU64 = AtomicU64::new(0);

async fn source(id: u64) -> Result<Product, BenchError> {
    SOURCE_CALLS.fetch_add(1, Ordering::Relaxed);
    Ok(product(id))
}

#[cached(entity = "product", ttl = "long", key = "{id}")]
async fn ours(id: u64) -> Result<Product, BenchError> {
    source(id).await
}

#[cached(entity = "product_local", ttl = "long", key = "{id}", local)]
async fn ours_local(id: u64) -> Result<Product, BenchError> {
    source(id).await
}

static PEER_URL: OnceLock<String> = OnceLock::new();

#[cached::macros::concurrent_cached(
    map_error = r##"|e| BenchError(format!("{e:?}"))"##,
    ty = "cached::AsyncRedisCache<u64, Product>",
    create = r##" {
        cached::AsyncRedisCache::builder("peer_product")
            .ttl(Duration::from_secs(24 * 3600))
            .connection_string(PEER_URL.get().expect("set before the first call"))
            .build()
            .await
            .expect("cached crate's Redis store")
    } "##
)]
async fn peer(id: u64) -> Result<Product, BenchError> {
    source(id).await
}

#[cached::macros::concurrent_cached(
    map_error = r##"|e| BenchError(format!("{e:?}"))"##,
    ty = "cached::AsyncRedisCache<u64, Product>",
    create = r##" {
        cached::AsyncRedisCache::builder("peer_miss")
            .ttl(operations::TTL)
            .connection_string(PEER_URL.get().expect("set before the first call"))
            .build()
            .await
            .expect("cached crate's Redis store")
    } "##
)]
async fn peer_miss(id: u64) -> Result<Product, BenchError> {
    Ok(product(id))
}

/// One way of reading product `id`.
#[derive(Clone)]
enum Setup {
    HandWritten(redis::aio::MultiplexedConnection),
    CachedCrate,
    /// `#[cached]` under the installed cache (the default configuration).
    Default,
    /// `#[cached]` under a scoped cache.
    Scoped(Cache),
    Local,
}

impl Reader for Setup {
    async fn read(&self, id: u64) -> Product {
        match self {
            Self::HandWritten(conn) => hand_written(conn, id).await,
            Self::CachedCrate => peer(id).await.expect("peer"),
            Self::Default => ours(id).await.expect("ours"),
            Self::Scoped(cache) => cache_runtime::with_cache(cache.clone(), ours(id))
                .await
                .expect("ours"),
            Self::Local => ours_local(id).await.expect("local"),
        }
    }
}

fn cache(url: &str, app: &str, pool_size: Option<usize>) -> Cache {
    let mut config = CacheConfig::builder()
        .redis_url(url)
        .app_prefix(app)
        .metrics_log_interval(None);
    if let Some(size) = pool_size {
        config = config.pool_size(size);
    }
    Cache::new(config.build().expect("config")).expect("cache")
}

async fn run(runtime_name: &str) {
    let server = RedisServer::start();
    let url = server.url();
    PEER_URL.set(url.clone()).expect("once");
    cache_runtime::install(cache(&url, "bench", None)).expect("install");
    let client = redis::Client::open(url.as_str()).expect("client");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let tables =
        std::env::var("PEERS_TABLES").unwrap_or_else(|_| "hits,misses,writes,others".into());
    let rounds = env_number("PEERS_ROUNDS", 9).max(1) as usize;
    let round = Duration::from_millis(env_number("PEERS_ROUND_MS", 1_000));
    if tables.contains("hits") {
        hits(&server, &url, &conn, runtime_name, rounds, round).await;
    }
    // Misses and writes on the runtime users run only.
    if runtime_name == "multi-thread" {
        if tables.contains("others") {
            others(&server, &url, &conn, round).await;
        }
        if tables.contains("misses") {
            misses(&server, &url, &conn, rounds, round).await;
        }
        if tables.contains("writes") {
            writes(&server, &url, &conn, rounds, round).await;
        }
    }
}

/// The hit table: every setup reads warm keys.
async fn hits(
    server: &RedisServer,
    url: &str,
    conn: &redis::aio::MultiplexedConnection,
    runtime_name: &str,
    rounds: usize,
    round: Duration,
) {
    let setups: Vec<(String, Setup)> = vec![
        (
            "hand-written redis-rs GET + postcard".into(),
            Setup::HandWritten(conn.clone()),
        ),
        (
            "`cached` 4.1 `#[concurrent_cached(redis = true)]`".into(),
            Setup::CachedCrate,
        ),
        (
            format!(
                "`#[cached]`, default (pool of {})",
                cache_runtime::DEFAULT_POOL_SIZE
            ),
            Setup::Default,
        ),
        (
            "`#[cached]`, `pool_size(2)`".into(),
            Setup::Scoped(cache(url, "bench", Some(2))),
        ),
        ("`#[cached]`, `local`".into(), Setup::Local),
    ];
    for id in 0..KEYS {
        let encoded = postcard::to_stdvec(&product(id)).expect("encode");
        let _: () = redis::cmd("SET")
            .arg(format!("raw:product:{id}"))
            .arg(encoded)
            .query_async(&mut conn.clone())
            .await
            .expect("seed");
        for (_, setup) in &setups {
            assert_eq!(
                setup.read(id).await,
                product(id),
                "every setup reads the same value"
            );
        }
    }
    let warmed = SOURCE_CALLS.load(Ordering::Relaxed);
    if let Ok(only) = std::env::var("PEERS_PROFILE") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
        // For a profiler: one setup (by its row, 0 = hand-written), 64 tasks, 10 s.
        let row: usize = only.parse().expect("PEERS_PROFILE is a row number");
        let tasks = env_number("PEERS_TASKS", 64) as usize;
        let client = cpu_time("self");
        let redis = cpu_time(&server.pid().expect("running").to_string());
        let seconds = env_number("PEERS_SECONDS", 10);
        let rate = throughput(&setups[row].1, KEYS, tasks, Duration::from_secs(seconds)).await;
        let calls = rate * seconds as f64;
        let per_call = |(before_user, before_sys): (f64, f64), (user, sys): (f64, f64)| {
            (
                (user - before_user) * 1e6 / calls,
                (sys - before_sys) * 1e6 / calls,
            )
        };
        let (client_user, client_sys) = per_call(client, cpu_time("self"));
        let (redis_user, redis_sys) =
            per_call(redis, cpu_time(&server.pid().expect("running").to_string()));
        println!(
            "{}, {tasks} tasks: {rate:.0} calls/s; CPU per call: client {client_user:.2} µs user + {client_sys:.2} µs system, redis-server {redis_user:.2} + {redis_sys:.2} µs",
            setups[row].0
        );
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn.clone())
            .await
            .expect("INFO");
        println!("{stats}");
        return;
    }

    let readers: Vec<Setup> = setups.iter().map(|(_, s)| s.clone()).collect();
    let figures = interleaved(&readers, KEYS, rounds, round).await;
    assert_eq!(
        SOURCE_CALLS.load(Ordering::Relaxed),
        warmed,
        "every measured call was a hit"
    );

    println!(
        "\n{runtime_name} runtime, {rounds} interleaved rounds of {round:?}, medians (ratio: median of per-round ratios to hand-written)\n"
    );
    let names: Vec<&str> = setups.iter().map(|(name, _)| name.as_str()).collect();
    print_table("calls/s", &names, &figures);
}

/// Runs `setups` interleaved, then each alone for its cost to Redis, and prints both tables.
async fn compare(
    title: &str,
    server: &RedisServer,
    conn: &redis::aio::MultiplexedConnection,
    setups: &[(&str, Operation)],
    rounds: usize,
    round: Duration,
) {
    let operations: Vec<Operation> = setups.iter().map(|(_, op)| op.clone()).collect();
    let figures = interleaved(&operations, KEYS, rounds, round).await;
    println!(
        "\n{title}, multi-thread runtime, {rounds} interleaved rounds of {round:?}, medians (ratio: median of per-round ratios to the first row)\n"
    );
    let names: Vec<&str> = setups.iter().map(|(name, _)| *name).collect();
    print_table(&format!("{title}/s"), &names, &figures);
    let mut costs = Vec::new();
    for (_, operation) in setups {
        costs.push(operations::cost(server, conn, operation, 64, round * 2).await);
    }
    println!(
        "\n{title}: what each costs Redis, 64 tasks, each alone for {:?}\n",
        round * 2
    );
    operations::print_costs(&names, &costs);
}

/// The miss table: every call asks for an id never asked before.
async fn misses(
    server: &RedisServer,
    url: &str,
    conn: &redis::aio::MultiplexedConnection,
    rounds: usize,
    round: Duration,
) {
    let ours = cache(url, "bench_miss", None);
    let unleased = Cache::new(
        CacheConfig::builder()
            .redis_url(url)
            .app_prefix("bench_miss_unleased")
            .metrics_log_interval(None)
            .lease_ttl(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let setups = [
        (
            "hand-written redis-rs GET + SET PX",
            Operation::HandWrittenMiss(conn.clone()),
        ),
        (
            "`cached` 4.1 `#[concurrent_cached(redis = true)]`",
            Operation::CachedCrateMiss,
        ),
        (
            "the runtime's miss protocol issued by hand (lease, value beside the key, populate script)",
            Operation::ProtocolMiss(conn.clone(), operations::load_promote(conn).await),
        ),
        (
            "`Cache::get_or_set`, default configuration",
            Operation::Miss(ours.clone(), ours.entity("product").expect("entity")),
        ),
        (
            "`Cache::get_or_set`, `lease_ttl(None)` (no lease: no cross-process single flight, no stale-set protection)",
            Operation::Miss(
                unleased.clone(),
                unleased.entity("product").expect("entity"),
            ),
        ),
    ];
    compare("misses", server, conn, &setups, rounds, round).await;
}

/// The write table: `SET PX` against `Cache::set` and `Cache::set_ordered` of the same values.
async fn writes(
    server: &RedisServer,
    url: &str,
    conn: &redis::aio::MultiplexedConnection,
    rounds: usize,
    round: Duration,
) {
    let ours = cache(url, "bench_write", None);
    let setups = [
        (
            "hand-written redis-rs SET PX",
            Operation::HandWrittenSet(conn.clone()),
        ),
        (
            "the runtime's write protocol issued by hand (`UNLINK` lease, `SET PX`, `PUBLISH`)",
            Operation::ProtocolSet(conn.clone()),
        ),
        (
            "`Cache::set`, default configuration",
            Operation::Set(ours.clone(), ours.entity("product").expect("entity")),
        ),
        (
            "`Cache::set_ordered`",
            Operation::SetOrdered(ours.clone(), ours.entity("ordered").expect("entity")),
        ),
    ];
    compare("writes", server, conn, &setups, rounds, round).await;
}

/// What the other operations cost Redis: a batch read, a session touch, a rate-limit check.
async fn others(
    server: &RedisServer,
    url: &str,
    conn: &redis::aio::MultiplexedConnection,
    round: Duration,
) {
    let ours = cache(url, "bench_other", None);
    let products = ours.entity("product").expect("entity");
    for id in 0..1_000u64 {
        ours.set(&products.key(&id), &product(id), cache_runtime::Ttl::Long)
            .await
            .expect("warm");
    }
    let sessions = Sessions::<Product>::new(
        &ours,
        "web",
        Duration::from_secs(1_800),
        Duration::from_secs(86_400),
    )
    .expect("sessions");
    let mut ids = Vec::with_capacity(1_000);
    for n in 0..1_000u64 {
        ids.push(
            sessions
                .create(&format!("user{n}"), &product(n))
                .await
                .expect("create"),
        );
    }
    let limiter =
        RateLimiter::new(&ours, "api", 1_000_000, Duration::from_secs(1)).expect("limiter");
    let setups = [
        (
            "`Cache::get_many` of 100 warm keys",
            Operation::GetMany(ours.clone(), products),
        ),
        (
            "`Sessions::get` (touch: `GETEX PX`)",
            Operation::SessionTouch(Arc::new(sessions), ids.into()),
        ),
        (
            "`RateLimiter::check`",
            Operation::RateLimitCheck(Arc::new(limiter)),
        ),
    ];
    let names: Vec<&str> = setups.iter().map(|(name, _)| *name).collect();
    let mut costs = Vec::new();
    for (_, operation) in &setups {
        costs.push(operations::cost(server, conn, operation, 64, round * 2).await);
    }
    println!(
        "\nother operations: what each costs Redis, 64 tasks, each alone for {:?}\n",
        round * 2
    );
    operations::print_costs(&names, &costs);
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() || std::env::var_os("PEERS_PROFILE").is_some() {
        if std::env::var_os(CHILD_ENV).is_none() {
            // Profiling: the multi-thread runtime only.
            return tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(run("multi-thread"));
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run("current-thread"));
        return;
    }
    // What `#[tokio::main]` builds: one worker per core.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run("multi-thread"));
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, "1")
        .status()
        .expect("second table");
    assert!(status.success(), "current-thread table failed");
}
