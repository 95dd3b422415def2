//! Ordered writes and batch reads at 1,000,000 keys, with the default configuration on a
//! multi-thread runtime, each part on redis-servers of its own while a client sends `PING`
//! every 5 ms:
//!
//! - 1,000,000 values of one entity written through `Cache::set_ordered` from 64 tasks,
//!   against `Cache::set` of the same keys and values on a second server: writes/s, memory per
//!   key (the revision record included), the longest `PING` wait;
//! - 10,000 sampled keys written again, with an older revision (each must be refused and leave
//!   the value as it was) and with a newer one (each must be stored);
//! - all 1,000,000 keys read back through `Cache::get_many` in batches of 100 from 64 tasks
//!   (every value must come back), against hand-written pipelines of 100 `GET`s of the same
//!   keys: keys/s, the longest `PING` wait.
//!
//! `cargo bench -p cache-tests --bench ordered_and_batch` (prints Markdown tables).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, CacheKey, Entity, Ttl};
use cache_tests::RedisServer;
use common::{KEYS, Pinger, TASKS, config, from_tasks};

const SAMPLE: u32 = 10_000;
const BATCH: u32 = 100;
const TTL: Ttl = Ttl::Long;
/// The revision every key is first written with.
const REVISION: u64 = 1_000;

fn rate(count: u32, time: Duration) -> f64 {
    f64::from(count) / time.as_secs_f64()
}

/// Writes every key of `entity` on `cache`, ordered or not; answers the time it took, the
/// memory it added, and the longest `PING` wait meanwhile.
async fn write_all(
    server: &RedisServer,
    cache: &Cache,
    entity: &Entity,
    ordered: bool,
) -> (Duration, f64, Duration) {
    let before = server.info_number("memory", "used_memory");
    let pinger = Pinger::start(server);
    let time = from_tasks(KEYS, 1, {
        let (cache, entity) = (cache.clone(), entity.clone());
        move |i| {
            let (cache, key) = (cache.clone(), entity.key(&i));
            async move {
                let value = u64::from(i);
                match ordered {
                    true => {
                        let stored = cache
                            .set_ordered(&key, &value, TTL, REVISION)
                            .await
                            .expect("set_ordered");
                        assert!(stored, "a first write is stored");
                    }
                    false => cache.set(&key, &value, TTL).await.expect("set"),
                }
            }
        }
    })
    .await;
    let waited = pinger.stop();
    let bytes = server.info_number("memory", "used_memory") - before;
    (time, bytes as f64 / f64::from(KEYS), waited)
}

/// Every `KEYS / SAMPLE`-th key written again with `revision` and `value + shift`: answers how
/// many writes were stored and how many keys then held the shifted value.
async fn rewrite_sample(cache: &Cache, entity: &Entity, revision: u64, shift: u64) -> (u32, u32) {
    let (mut stored, mut shifted) = (0, 0);
    for n in 0..SAMPLE {
        let id = n * (KEYS / SAMPLE);
        let key = entity.key(&id);
        let value = u64::from(id) + shift;
        if cache
            .set_ordered(&key, &value, TTL, revision)
            .await
            .expect("set_ordered")
        {
            stored += 1;
        }
        let now: Option<u64> = cache.get(&key).await.expect("get");
        if now == Some(value) {
            shifted += 1;
        }
    }
    (stored, shifted)
}

fn batch_keys(entity: &Entity, start: u32) -> Vec<CacheKey> {
    (start..(start + BATCH).min(KEYS))
        .map(|id| entity.key(&id))
        .collect()
}

/// Reads every key in batches through `get_many`; answers the time, the values that came back,
/// and the longest `PING` wait.
async fn read_all_cached(
    server: &RedisServer,
    cache: &Cache,
    entity: &Entity,
) -> (Duration, u64, Duration) {
    let found = Arc::new(AtomicU64::new(0));
    let pinger = Pinger::start(server);
    let time = from_tasks(KEYS, BATCH, {
        let (cache, entity, found) = (cache.clone(), entity.clone(), found.clone());
        move |start| {
            let (cache, keys, found) = (cache.clone(), batch_keys(&entity, start), found.clone());
            async move {
                let values: Vec<Option<u64>> = cache.get_many(&keys).await.expect("get_many");
                let right = values
                    .iter()
                    .zip(start..)
                    .filter(|(value, id)| **value == Some(u64::from(*id)))
                    .count();
                found.fetch_add(right as u64, Ordering::Relaxed);
            }
        }
    })
    .await;
    (time, found.load(Ordering::Relaxed), pinger.stop())
}

/// The same batches as hand-written pipelines of `GET`s on one multiplexed connection (the
/// stored bytes, not decoded); answers the time and the values that came back.
async fn read_all_plain(server: &RedisServer, entity: &Entity) -> (Duration, u64) {
    let client = redis::Client::open(server.url()).expect("client");
    let connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let found = Arc::new(AtomicU64::new(0));
    let time = from_tasks(KEYS, BATCH, {
        let (entity, found) = (entity.clone(), found.clone());
        move |start| {
            let (mut connection, keys, found) = (
                connection.clone(),
                batch_keys(&entity, start),
                found.clone(),
            );
            async move {
                let mut pipeline = redis::pipe();
                for key in &keys {
                    pipeline.cmd("GET").arg(key.as_str());
                }
                let values: Vec<Option<Vec<u8>>> =
                    pipeline.query_async(&mut connection).await.expect("GETs");
                let present = values.iter().filter(|value| value.is_some()).count();
                found.fetch_add(present as u64, Ordering::Relaxed);
            }
        }
    })
    .await;
    (time, found.load(Ordering::Relaxed))
}

async fn ordered_writes_and_batch_reads() {
    let ordered_server = RedisServer::start();
    let plain_server = RedisServer::start();
    let ordered = Cache::new(config(&ordered_server)).expect("cache");
    let plain = Cache::new(config(&plain_server)).expect("cache");
    let entity = ordered.entity("product").expect("entity");
    let plain_entity = plain.entity("product").expect("entity");

    let (ordered_time, ordered_bytes, ordered_wait) =
        write_all(&ordered_server, &ordered, &entity, true).await;
    let (plain_time, plain_bytes, plain_wait) =
        write_all(&plain_server, &plain, &plain_entity, false).await;
    println!(
        "| 1,000,000 values of one entity, {TASKS} tasks | `Cache::set_ordered` | `Cache::set` | ratio |"
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| writes/s | {:.0} | {:.0} | {:.2}× |",
        rate(KEYS, ordered_time),
        rate(KEYS, plain_time),
        rate(KEYS, ordered_time) / rate(KEYS, plain_time)
    );
    println!(
        "| memory per key (`used_memory`) | {ordered_bytes:.1} B | {plain_bytes:.1} B | {:.2}× |",
        ordered_bytes / plain_bytes
    );
    println!("| longest PING wait while writing | {ordered_wait:?} | {plain_wait:?} | |");

    let (older_stored, older_shifted) = rewrite_sample(&ordered, &entity, REVISION - 1, 1).await;
    let (newer_stored, newer_shifted) = rewrite_sample(&ordered, &entity, REVISION + 1, 2).await;
    println!();
    println!(
        "| {SAMPLE} sampled keys of the 1,000,000, written again | stored | holding the new value |"
    );
    println!("| --- | --- | --- |");
    println!("| with an older revision | {older_stored} | {older_shifted} |");
    println!("| with a newer revision | {newer_stored} | {newer_shifted} |");
    assert_eq!(
        (older_stored, older_shifted),
        (0, 0),
        "older writes refused"
    );
    assert_eq!(
        (newer_stored, newer_shifted),
        (SAMPLE, SAMPLE),
        "newer writes stored"
    );

    // Read back the server written without revisions, whose values are all still the first.
    let (cached_time, cached_found, cached_wait) =
        read_all_cached(&plain_server, &plain, &plain_entity).await;
    let (hand_time, hand_found) = read_all_plain(&plain_server, &plain_entity).await;
    println!();
    println!(
        "| 1,000,000 keys in batches of {BATCH}, {TASKS} tasks | `Cache::get_many` | pipelined `GET`s | ratio |"
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| keys/s | {:.0} | {:.0} | {:.2}× |",
        rate(KEYS, cached_time),
        rate(KEYS, hand_time),
        rate(KEYS, cached_time) / rate(KEYS, hand_time)
    );
    println!("| values that came back | {cached_found} | {hand_found} | |");
    println!("| longest PING wait while reading | {cached_wait:?} | | |");
    assert_eq!(cached_found, u64::from(KEYS), "every value read back");
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(ordered_writes_and_batch_reads());
}
