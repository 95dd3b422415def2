//! Misses and writes against hand-written redis-rs and the `cached` crate, and what each costs
//! Redis: the server's CPU time per operation (`/proc/<pid>/stat`) and its `INFO commandstats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Arc;

use cache_runtime::{Cache, Entity, RateLimiter, Sessions, Ttl};
use cache_tests::RedisServer;

use crate::product::{Product, product};
use crate::rounds::{Reader, throughput};

mod protocol;

pub use protocol::load_promote;

/// A new id for every miss: no two calls of any setup ask for the same key.
static NEXT_ID: AtomicU64 = AtomicU64::new(1 << 40);

fn fresh_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// How long every setup's values live: misses write 100k+ new keys a second, and a short TTL
/// keeps the server's memory (and so its speed) the same from the first round to the last.
pub const TTL: Duration = Duration::from_secs(2);
pub(crate) const RAW_TTL_MS: u64 = 2_000;

fn encoded(id: u64) -> Vec<u8> {
    postcard::to_stdvec(&product(id)).expect("encode")
}

/// What a user writes by hand for a miss: `GET`, then the source, then `SET PX`.
pub async fn hand_written_miss(conn: &redis::aio::MultiplexedConnection, id: u64) -> Product {
    let key = format!("raw:miss:{id}");
    let found: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn.clone())
        .await
        .expect("GET");
    if let Some(bytes) = found {
        return postcard::from_bytes(&bytes).expect("decode");
    }
    let value = product(id);
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(postcard::to_stdvec(&value).expect("encode"))
        .arg("PX")
        .arg(RAW_TTL_MS)
        .query_async(&mut conn.clone())
        .await
        .expect("SET");
    value
}

/// One way of missing or writing.
#[derive(Clone)]
pub enum Operation {
    /// Hand-written `GET` + `SET PX` of a new id.
    HandWrittenMiss(redis::aio::MultiplexedConnection),
    /// The runtime's miss protocol by hand (lease, value beside the key, populate script), a new
    /// id; the populate script's digest.
    ProtocolMiss(redis::aio::MultiplexedConnection, String),
    /// The `cached` crate's Redis store, a new id.
    CachedCrateMiss,
    /// `Cache::get_or_set` of a new id, the loader answering at once.
    Miss(Cache, Entity),
    /// Hand-written `SET PX` of an encoded product.
    HandWrittenSet(redis::aio::MultiplexedConnection),
    /// The runtime's write protocol by hand (`UNLINK` lease, `SET PX`, `PUBLISH`).
    ProtocolSet(redis::aio::MultiplexedConnection),
    /// `Cache::set`.
    Set(Cache, Entity),
    /// `Cache::set_ordered`, each write with a higher revision.
    SetOrdered(Cache, Entity),
    /// `Cache::get_many` of 100 warm keys (of 1,000).
    GetMany(Cache, Entity),
    /// `Sessions::get` of one of 1,000 live sessions: the read that extends its life.
    SessionTouch(Arc<Sessions<Product>>, Arc<[String]>),
    /// `RateLimiter::check` of one of 1,000 subjects.
    RateLimitCheck(Arc<RateLimiter>),
}

static REVISION: AtomicU64 = AtomicU64::new(1);

impl Reader for Operation {
    async fn read(&self, id: u64) -> Product {
        match self {
            Self::HandWrittenMiss(conn) => hand_written_miss(conn, fresh_id()).await,
            Self::ProtocolMiss(conn, promote) => {
                protocol::leased_miss(conn, promote, fresh_id()).await
            }
            Self::ProtocolSet(conn) => protocol::guarded_set(conn, id).await,
            Self::CachedCrateMiss => crate::peer_miss(fresh_id()).await.expect("peer"),
            Self::Miss(cache, entity) => {
                let id = fresh_id();
                cache
                    .get_or_set(&entity.key(&id), Ttl::Fixed(TTL), || async {
                        Ok::<_, std::convert::Infallible>(product(id))
                    })
                    .await
                    .expect("infallible")
            }
            Self::HandWrittenSet(conn) => {
                let () = redis::cmd("SET")
                    .arg(format!("raw:write:{id}"))
                    .arg(encoded(id))
                    .arg("PX")
                    .arg(RAW_TTL_MS)
                    .query_async(&mut conn.clone())
                    .await
                    .expect("SET");
                product(id)
            }
            Self::Set(cache, entity) => {
                let value = product(id);
                cache
                    .set(&entity.key(&id), &value, Ttl::Fixed(TTL))
                    .await
                    .expect("set");
                value
            }
            Self::GetMany(cache, entity) => {
                let keys: Vec<_> = (0..100).map(|n| entity.key(&((id + n) % 1_000))).collect();
                let values: Vec<Option<Product>> = cache.get_many(&keys).await.expect("get_many");
                assert!(values.iter().all(Option::is_some), "every key warm");
                product(id)
            }
            Self::SessionTouch(sessions, ids) => {
                let id = &ids[usize::try_from(id % 1_000).expect("small")];
                sessions.get(id).await.expect("get").expect("live session")
            }
            Self::RateLimitCheck(limiter) => {
                std::hint::black_box(limiter.check(&(id % 1_000).to_string()).await);
                product(id)
            }
            Self::SetOrdered(cache, entity) => {
                let value = product(id);
                let revision = REVISION.fetch_add(1, Ordering::Relaxed);
                cache
                    .set_ordered(&entity.key(&id), &value, Ttl::Fixed(TTL), revision)
                    .await
                    .expect("set_ordered");
                value
            }
        }
    }
}

/// What one operation cost Redis, run alone by 64 tasks.
pub struct Cost {
    pub per_second: f64,
    /// The server process's CPU time (user + system) per operation, µs.
    pub process_us: f64,
    /// `INFO commandstats` per operation: (command, calls, µs). A script's own row includes
    /// the commands it ran, which also have rows of their own.
    pub commands: Vec<(String, f64, f64)>,
}

async fn info(conn: &redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn.clone())
        .await
        .expect("INFO")
}

/// `cmdstat_<name>:calls=..,usec=..` rows, skipping `info` and `config` (the bench's own).
fn command_stats(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |label: &str| -> Option<u64> {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(label)?.strip_prefix('='))?
                    .parse()
                    .ok()
            };
            Some((name.to_owned(), field("calls")?, field("usec")?))
        })
        .filter(|(name, _, _)| !name.starts_with("info") && !name.starts_with("config"))
        .collect()
}

/// Runs `operation` alone with `tasks` tasks for `time` and measures what it cost the server.
pub async fn cost(
    server: &RedisServer,
    conn: &redis::aio::MultiplexedConnection,
    operation: &Operation,
    tasks: usize,
    time: Duration,
) -> Cost {
    let pid = server.pid().expect("running").to_string();
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn.clone())
        .await
        .expect("RESETSTAT");
    let before = crate::rounds::cpu_time(&pid);
    let per_second = throughput(operation, 1_000, tasks, time).await;
    let after = crate::rounds::cpu_time(&pid);
    let stats = command_stats(&info(conn, "commandstats").await);
    let operations = per_second * time.as_secs_f64();
    let process_us = ((after.0 - before.0) + (after.1 - before.1)) * 1e6 / operations;
    let commands = stats
        .into_iter()
        .map(|(name, calls, usec)| (name, calls as f64 / operations, usec as f64 / operations))
        .collect();
    Cost {
        per_second,
        process_us,
        commands,
    }
}

/// A markdown table of costs, one row per operation.
pub fn print_costs(names: &[&str], costs: &[Cost]) {
    println!(
        "| operation | ops/s alone | redis-server CPU per op | commands per op (`commandstats` µs per op) |"
    );
    println!("| --- | --- | --- | --- |");
    for (name, cost) in names.iter().zip(costs) {
        let mut commands: Vec<_> = cost.commands.iter().collect();
        commands.sort_by(|a, b| b.2.total_cmp(&a.2));
        let listed: Vec<String> = commands
            .iter()
            .filter(|(_, calls, _)| *calls >= 0.01)
            .map(|(name, calls, us)| format!("{calls:.2} {} ({us:.2} µs)", name.to_uppercase()))
            .collect();
        println!(
            "| {name} | {:.1}k | {:.2} µs | {} |",
            cost.per_second / 1_000.0,
            cost.process_us,
            listed.join(", ")
        );
    }
}
