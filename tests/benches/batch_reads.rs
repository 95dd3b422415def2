//! Batch reads of 100 ids against what a user would otherwise write, with the default
//! configuration on a multi-thread runtime (`#[tokio::main]`):
//!
//! - all hits: `Cache::get_or_set_many` against a hand-written pipeline of 100 `GET`s with a
//!   postcard decode each, against a hand-written `MGET` of the 100 keys (what the framework
//!   sends on one Redis), against `Cache::get_many` of the same keys (the framework's read
//!   without the batch's bookkeeping), and against 100 `get_or_set` calls (one after another,
//!   and all at once with `join_all`);
//! - all cold, with a source that takes 1 ms per call: `get_or_set_many` (one source call)
//!   against 100 `get_or_set` calls (100 source calls, one after another and all at once).
//!
//! - one batch of 10,000 cold ids, and what two bystanders reading every 5 ms wait meanwhile:
//!   another client's `PING`, and a `get` through the same cache.
//!
//! Rounds of every setup are interleaved (the order rotating) and the medians are reported:
//! batches per second, and the ratio to the first row of each table, taken per round (each
//! setup against the first row's rate in the same round, so that the machine's drift over the
//! run cancels out).
//!
//! `cargo bench -p cache-tests --bench batch_reads` (prints Markdown tables; `BATCH_ROUNDS`
//! sets the rounds, default 5 of 1 s each).

mod product;
#[allow(
    dead_code,
    reason = "only the CPU-time reader and the median are used here"
)]
mod rounds;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheConfig, Entity, ReadOptions, Ttl};
use cache_tests::RedisServer;
use futures_util::future::join_all;
use product::{Product, product};

const BATCH: u64 = 100;
/// Ids of the all-hit rounds.
const WARM_IDS: u64 = 10_000;
const OPTIONS: ReadOptions = ReadOptions::new(Ttl::Long);
const SOURCE: Duration = Duration::from_millis(1);
const TASKS: [u64; 2] = [1, 16];

#[derive(Clone, Copy, Debug)]
enum Setup {
    HandWritten,
    /// A hand-written `MGET` of the 100 keys + decode.
    HandWrittenMget,
    /// `get_many` (no loader): what the framework's own read of 100 keys costs.
    GetMany,
    Batch,
    Sequential,
    Concurrent,
}

impl Setup {
    fn name(self, cold: bool) -> &'static str {
        match (self, cold) {
            (Self::HandWritten, _) => "hand-written pipeline of 100 `GET`s + decode",
            (Self::HandWrittenMget, _) => "hand-written `MGET` of the 100 keys + decode",
            (Self::GetMany, _) => "`get_many` of the 100 keys (no loading)",
            (Self::Batch, false) => "`get_or_set_many`, 100 ids",
            (Self::Batch, true) => "`get_or_set_many`, 100 ids (1 source call)",
            (Self::Sequential, _) => "100 `get_or_set` calls, one after another",
            (Self::Concurrent, _) => "100 `get_or_set` calls at once (`join_all`)",
        }
    }
}

#[derive(Clone)]
struct Bench {
    cache: Cache,
    products: Entity,
    raw: redis::aio::MultiplexedConnection,
    /// The next never-read id, for cold rounds.
    next_cold: Arc<AtomicU64>,
    /// redis-server's pid, for its CPU time.
    redis_pid: String,
}

impl Bench {
    fn ids(&self, cold: bool, task: u64, round: u64) -> Vec<u64> {
        match cold {
            true => {
                let first = self.next_cold.fetch_add(BATCH, Ordering::Relaxed);
                (first..first + BATCH).collect()
            }
            false => {
                let first = (task * 7919 + round * BATCH) % (WARM_IDS - BATCH);
                (first..first + BATCH).collect()
            }
        }
    }

    async fn batch(&self, setup: Setup, ids: Vec<u64>) -> usize {
        match setup {
            Setup::HandWritten => {
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("GET").arg(format!("raw:product:{id}"));
                }
                let replies: Vec<Vec<u8>> =
                    pipe.query_async(&mut self.raw.clone()).await.expect("GET");
                decoded(&replies)
            }
            Setup::HandWrittenMget => {
                let mut mget = redis::cmd("MGET");
                for id in &ids {
                    mget.arg(format!("raw:product:{id}"));
                }
                let replies: Vec<Vec<u8>> =
                    mget.query_async(&mut self.raw.clone()).await.expect("MGET");
                decoded(&replies)
            }
            Setup::GetMany => {
                let keys: Vec<_> = ids.iter().map(|id| self.products.key(id)).collect();
                let values = self
                    .cache
                    .get_many::<Product>(&keys)
                    .await
                    .expect("get_many");
                values.iter().flatten().count()
            }
            Setup::Batch => {
                let values = self
                    .cache
                    .get_or_set_many(&self.products, &ids, OPTIONS, |missing| async move {
                        tokio::time::sleep(SOURCE).await;
                        Ok::<_, std::io::Error>(
                            missing
                                .into_iter()
                                .map(|id| (id, product(id)))
                                .collect::<HashMap<_, _>>(),
                        )
                    })
                    .await
                    .expect("batch");
                values.iter().flatten().count()
            }
            Setup::Sequential => {
                let mut found = 0;
                for id in ids {
                    std::hint::black_box(self.single(id).await);
                    found += 1;
                }
                found
            }
            Setup::Concurrent => {
                let reads = join_all(ids.iter().map(|&id| self.single(id))).await;
                reads.len()
            }
        }
    }

    async fn single(&self, id: u64) -> Product {
        let key = self.products.key(&id);
        self.cache
            .get_or_set_with(&key, OPTIONS, || async move {
                tokio::time::sleep(SOURCE).await;
                Ok::<_, std::io::Error>(product(id))
            })
            .await
            .expect("single")
    }

    /// Batches per second of `tasks` tasks running `setup` for `round`, and redis-server's CPU
    /// time per batch (µs).
    async fn throughput(
        &self,
        setup: Setup,
        cold: bool,
        tasks: u64,
        round: Duration,
    ) -> (f64, f64) {
        let redis_cpu = || {
            let (user, system) = rounds::cpu_time(&self.redis_pid);
            user + system
        };
        let cpu_before = redis_cpu();
        let batches = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + round;
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let (bench, batches) = (self.clone(), batches.clone());
                tokio::spawn(async move {
                    let mut done = 0;
                    while Instant::now() < deadline {
                        let ids = bench.ids(cold, task, done);
                        let found = bench.batch(setup, ids).await;
                        assert_eq!(found, BATCH as usize, "{setup:?}: every id answered");
                        done += 1;
                    }
                    batches.fetch_add(done, Ordering::Relaxed);
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        let batches = batches.load(Ordering::Relaxed) as f64;
        let redis_us = (redis_cpu() - cpu_before) * 1e6 / batches;
        (batches / round.as_secs_f64(), redis_us)
    }
}

/// How many of `replies` decode as a product (each decoded, as a caller would).
fn decoded(replies: &[Vec<u8>]) -> usize {
    let decoded = replies
        .iter()
        .map(|bytes| postcard::from_bytes::<Product>(bytes));
    decoded
        .map(std::hint::black_box)
        .filter(Result::is_ok)
        .count()
}

fn median(mut values: Vec<f64>) -> f64 {
    rounds::median(&mut values)
}

async fn table(bench: &Bench, setups: &[Setup], cold: bool, rounds: usize) {
    let round = Duration::from_secs(1);
    let mut rates = vec![vec![Vec::new(); TASKS.len()]; setups.len()];
    // redis-server's CPU per batch, with 16 tasks.
    let mut redis_us = vec![Vec::new(); setups.len()];
    for n in 0..rounds {
        for offset in 0..setups.len() {
            let s = (n + offset) % setups.len();
            for (t, &tasks) in TASKS.iter().enumerate() {
                let (rate, redis) = bench.throughput(setups[s], cold, tasks, round).await;
                rates[s][t].push(rate);
                if t == TASKS.len() - 1 {
                    redis_us[s].push(redis);
                }
            }
        }
    }
    // Each round's rate against the first row's in the same round, then the median.
    let ratios: Vec<Vec<f64>> = rates
        .iter()
        .map(|per_tasks| {
            let per_round = per_tasks.iter().zip(&rates[0]);
            per_round
                .map(|(rounds, base)| median(rounds.iter().zip(base).map(|(r, b)| r / b).collect()))
                .collect()
        })
        .collect();
    let medians: Vec<Vec<f64>> = rates
        .into_iter()
        .map(|per_tasks| per_tasks.into_iter().map(median).collect())
        .collect();
    println!(
        "\n| {} | 1 task | 16 tasks | redis-server CPU per batch (16 tasks) |",
        if cold {
            "100 cold ids, 1 ms source"
        } else {
            "100 ids, all hits"
        }
    );
    println!("| --- | --- | --- | --- |");
    for (((setup, row), ratios), redis_us) in setups.iter().zip(&medians).zip(&ratios).zip(redis_us)
    {
        let cells: Vec<String> = row
            .iter()
            .zip(ratios)
            .map(|(rate, ratio)| format!("{rate:.0} batches/s ({ratio:.2}×)"))
            .collect();
        println!(
            "| {} | {} | {:.0} µs |",
            setup.name(cold),
            cells.join(" | "),
            median(redis_us)
        );
    }
}

#[tokio::main]
async fn main() {
    let rounds = std::env::var("BATCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let server = RedisServer::start();
    let config = CacheConfig::builder()
        .redis_url(server.url())
        .app_prefix("bench")
        .metrics_log_interval(None)
        .build()
        .expect("config");
    let cache = Cache::new(config).expect("cache");
    let products = cache.entity("product").expect("entity");
    let raw = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    for id in 0..WARM_IDS {
        let value = product(id);
        cache
            .set(&products.key(&id), &value, Ttl::Long)
            .await
            .expect("set");
        let bytes = postcard::to_allocvec(&value).expect("encode");
        let _: () = redis::cmd("SET")
            .arg(format!("raw:product:{id}"))
            .arg(bytes)
            .query_async(&mut raw.clone())
            .await
            .expect("SET");
    }
    let bench = Bench {
        cache,
        products,
        raw,
        redis_pid: server.pid().expect("redis-server's pid").to_string(),
        next_cold: Arc::new(AtomicU64::new(1 << 40)),
    };
    println!("{rounds} interleaved rounds of 1 s per setup and task count; medians.");
    let hits = [
        Setup::HandWritten,
        Setup::HandWrittenMget,
        Setup::GetMany,
        Setup::Batch,
        Setup::Sequential,
        Setup::Concurrent,
    ];
    table(&bench, &hits, false, rounds).await;
    let cold = [Setup::Batch, Setup::Sequential, Setup::Concurrent];
    table(&bench, &cold, true, rounds).await;
    large_batch(&bench).await;
}

/// One batch of 10,000 cold ids (1 ms source) while two bystanders read every 5 ms: a `PING`
/// on a connection of its own (what other clients of the Redis wait) and a `get` of a cached
/// key through the same cache (what other callers sharing its connection wait).
async fn large_batch(bench: &Bench) {
    const IDS: u64 = 10_000;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = |probe: u8| {
        let (bench, done) = (bench.clone(), done.clone());
        tokio::spawn(async move {
            let (mut longest, key) = (Duration::ZERO, bench.products.key(&0u64));
            while !done.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match probe {
                    0 => {
                        let _: String = redis::cmd("PING")
                            .query_async(&mut bench.raw.clone())
                            .await
                            .expect("PING");
                    }
                    _ => {
                        let read: Option<Product> = bench.cache.get(&key).await.expect("get");
                        assert!(read.is_some(), "the bystander's key is cached");
                    }
                }
                longest = longest.max(sent.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            longest
        })
    };
    let (ping, get) = (watch(0), watch(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let first = bench.next_cold.fetch_add(IDS, Ordering::Relaxed);
    let ids: Vec<u64> = (first..first + IDS).collect();
    let started = Instant::now();
    let found = bench.batch(Setup::Batch, ids).await;
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (ping, get) = (ping.await.expect("ping"), get.await.expect("get"));
    assert_eq!(found, IDS as usize, "every id answered");
    println!("\n| 10,000 cold ids in one batch, 1 ms source | |");
    println!("| --- | --- |");
    println!("| the batch took | {:.0} ms |", took.as_secs_f64() * 1e3);
    println!(
        "| longest `PING` of another client meanwhile | {:.2} ms |",
        ping.as_secs_f64() * 1e3
    );
    println!(
        "| longest `get` through the same cache meanwhile | {:.2} ms |",
        get.as_secs_f64() * 1e3
    );
}
