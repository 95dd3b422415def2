//! The capacity model of docs/scaling.md against a measured mixed load.
//!
//! A mixed load for 5 s, spread over 1, 8 and 32 `Cache` instances in one process (64 tasks in
//! all, each on its instance): 80 % hits, 10 % misses, 8 % writes, 2 % key deletions, no local
//! tier. The model predicts the server's CPU as the sum over operations of count × that
//! operation's cost alone, measured just before on one instance with as many tasks as each
//! instance of the mix has (what a connection carries at once sets how many commands Redis
//! reads per system call, so the cost of an operation depends on it); the table compares the
//! prediction with what `/proc/<pid>/stat` measured, and also gives the prediction from costs
//! measured at 64 tasks on one connection, whatever the fleet.
//!
//! `cargo bench -p cache-tests --bench capacity` (~1 min; prints a Markdown table).

mod product;
#[allow(
    dead_code,
    reason = "shared with the throughput benches; this one reads CPU times only"
)]
mod rounds;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheConfig, Entity, Ttl};
use cache_tests::RedisServer;
use product::{Product, product};
use rounds::cpu_time;

const TASKS: u64 = 64;
/// Warm ids the hits read.
const WARM: u64 = 1_000;
/// Misses write keys that live this long, so the server's memory stays flat.
const MISS_TTL: Ttl = Ttl::Fixed(Duration::from_secs(2));

#[derive(Clone, Copy, Debug)]
enum Op {
    Hit,
    Miss,
    Write,
    Delete,
}

const OPS: [Op; 4] = [Op::Hit, Op::Miss, Op::Write, Op::Delete];

/// The mix, per 50 operations: 40 hits, 5 misses, 4 writes, 1 deletion.
fn mixed(n: u64) -> Op {
    match n % 50 {
        0..40 => Op::Hit,
        40..45 => Op::Miss,
        45..49 => Op::Write,
        _ => Op::Delete,
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1 << 40);

async fn run(cache: &Cache, products: &Entity, op: Op, n: u64) {
    match op {
        Op::Hit => {
            let id = n % WARM;
            let value: Result<Product, std::convert::Infallible> = cache
                .get_or_set(
                    &products.key(&id),
                    Ttl::Long,
                    || async move { Ok(product(id)) },
                )
                .await;
            std::hint::black_box(value.ok());
        }
        Op::Miss => {
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let value: Result<Product, std::convert::Infallible> = cache
                .get_or_set(
                    &products.key(&id),
                    MISS_TTL,
                    || async move { Ok(product(id)) },
                )
                .await;
            std::hint::black_box(value.ok());
        }
        Op::Write => {
            // Written ids other than the warm ones, so hits stay hits.
            let id = WARM + n % WARM;
            cache
                .set(&products.key(&id), &product(id), Ttl::Long)
                .await
                .expect("write");
        }
        Op::Delete => {
            let id = WARM + n % WARM;
            cache.delete(&products.key(&id)).await.expect("delete");
        }
    }
}

/// Runs `pick` from `tasks` tasks on `caches` (spread over them) for `time`: operations done
/// per kind.
async fn load(caches: &[Cache], tasks: u64, pick: fn(u64) -> Op, time: Duration) -> [u64; 4] {
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let deadline = Instant::now() + time;
    let tasks: Vec<_> = (0..tasks)
        .map(|task| {
            let cache = caches[task as usize % caches.len()].clone();
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let products = cache.entity("product").expect("entity");
                let mut n = task * 7_919;
                while Instant::now() < deadline {
                    let op = pick(n);
                    run(&cache, &products, op, n).await;
                    counts[op as usize].fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    std::array::from_fn(|i| counts[i].load(Ordering::Relaxed))
}

/// What the server spent so far, in seconds: (its process's CPU time, the command time
/// `INFO commandstats` sums, scripts with the commands they ran, the bench's own `INFO` left
/// out).
fn server_cpu(server: &RedisServer) -> (f64, f64) {
    let (user, system) = cpu_time(&server.pid().expect("running").to_string());
    let stats: String = server.query(redis::cmd("INFO").arg("commandstats"));
    let usec: u64 = stats
        .lines()
        .filter(|line| !line.starts_with("cmdstat_info"))
        .filter_map(|line| {
            line.split("usec=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    (user + system, usec as f64 / 1e6)
}

fn spent(before: (f64, f64), after: (f64, f64)) -> [f64; 2] {
    [after.0 - before.0, after.1 - before.1]
}

fn instance(url: &str) -> Cache {
    let config = CacheConfig::builder()
        .redis_url(url)
        .app_prefix("capacity")
        .metrics_log_interval(None)
        .build()
        .expect("config");
    Cache::new(config).expect("cache")
}

/// Each operation's cost alone: `tasks` tasks on `cache` for 1.5 s, redis-server CPU seconds
/// per operation.
async fn costs(server: &RedisServer, cache: &Cache, tasks: u64) -> [[f64; 4]; 2] {
    let mut cost = [[0.0; 4]; 2];
    for op in OPS {
        let pick: fn(u64) -> Op = match op {
            Op::Hit => |_| Op::Hit,
            Op::Miss => |_| Op::Miss,
            Op::Write => |_| Op::Write,
            Op::Delete => |_| Op::Delete,
        };
        let before = server_cpu(server);
        let slice = std::slice::from_ref(cache);
        let counts = load(slice, tasks, pick, Duration::from_millis(1_500)).await;
        let spent = spent(before, server_cpu(server));
        for (measure, seconds) in spent.iter().enumerate() {
            cost[measure][op as usize] = seconds / counts[op as usize] as f64;
        }
    }
    cost
}

fn predict(counts: &[u64; 4], cost: &[f64; 4]) -> f64 {
    counts.iter().zip(cost).map(|(n, c)| *n as f64 * c).sum()
}

#[tokio::main]
async fn main() {
    let server = RedisServer::start();
    let url = server.url();
    let first = instance(&url);
    let products = first.entity("product").expect("entity");
    for id in 0..WARM {
        run(&first, &products, Op::Hit, id).await;
    }
    let at_64 = costs(&server, &first, TASKS).await;
    let mut rows = Vec::new();
    let mut fleet = vec![first];
    for instances in [1u64, 8, 32] {
        while fleet.len() < instances as usize {
            fleet.push(instance(&url));
        }
        // Every instance subscribed, its heartbeat running.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let per_instance = costs(&server, &fleet[0], TASKS / instances).await;
        let time = Duration::from_secs(5);
        let before = server_cpu(&server);
        let counts = load(&fleet, TASKS, mixed, time).await;
        let measured = spent(before, server_cpu(&server));
        rows.push((instances, per_instance, counts, measured, time));
    }

    for (measure, title) in [
        "redis-server CPU (process)",
        "command time (`commandstats`)",
    ]
    .iter()
    .enumerate()
    {
        println!("\n{title}: each operation alone on one instance, per operation\n");
        println!("| tasks on the connection | hit | miss | write | key deletion |");
        println!("| --- | --- | --- | --- | --- |");
        let line = |tasks: u64, cost: &[f64; 4]| {
            let us: Vec<String> = cost.iter().map(|c| format!("{:.2} µs", c * 1e6)).collect();
            println!("| {tasks} | {} |", us.join(" | "));
        };
        line(TASKS, &at_64[measure]);
        for (instances, cost, ..) in &rows[1..] {
            line(TASKS / instances, &cost[measure]);
        }
        println!(
            "\n{title}: mixed load (80 % hits, 10 % misses, 8 % writes, 2 % deletions), 64 tasks, 5 s\n"
        );
        println!(
            "| instances | operations/s | measured | predicted, costs at the same tasks per connection | error | predicted, costs at 64 tasks | error |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for (instances, cost, counts, measured, time) in &rows {
            let measured = measured[measure];
            let fitted = predict(counts, &cost[measure]);
            let flat = predict(counts, &at_64[measure]);
            let total: u64 = counts.iter().sum();
            println!(
                "| {instances} | {:.1}k | {measured:.2} s | {fitted:.2} s | {:+.0} % | {flat:.2} s | {:+.0} % |",
                total as f64 / time.as_secs_f64() / 1_000.0,
                (fitted - measured) / measured * 100.0,
                (flat - measured) / measured * 100.0,
            );
        }
    }
}
