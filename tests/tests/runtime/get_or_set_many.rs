//! `Cache::get_or_set_many`: many ids in one round trip, the missing ones loaded by one call,
//! with the guarantees of a single read for each.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::RedisServer;
use cache_runtime::{Cache, ReadOptions, Ttl};
use tokio::sync::Notify;

use crate::{cache, config};

const MEDIUM: ReadOptions = ReadOptions::new(Ttl::Medium);

/// Records each call's ids (sorted) and answers `value(id)` for each.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u64>>>>);

impl Recorder {
    async fn load(&self, mut ids: Vec<u64>) -> Result<HashMap<u64, String>, std::io::Error> {
        ids.sort_unstable();
        self.0.lock().expect("lock").push(ids.clone());
        Ok(ids.into_iter().map(|id| (id, value(id))).collect())
    }

    fn calls(&self) -> Vec<Vec<u64>> {
        self.0.lock().expect("lock").clone()
    }
}

fn value(id: u64) -> String {
    format!("product {id}")
}

#[tokio::test]
async fn a_hundred_ids_with_thirty_missing_call_the_loader_once_with_those_thirty() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let ids: Vec<u64> = (1..=100).collect();
    let missing: Vec<u64> = ids.iter().copied().filter(|id| id % 10 < 3).collect();
    assert_eq!(missing.len(), 30);
    for id in ids.iter().filter(|id| !missing.contains(id)) {
        let key = products.key(id);
        cache
            .set(&key, &value(*id), Ttl::Medium)
            .await
            .expect("set");
    }

    let reads = || (server.command_calls("mget"), server.command_calls("get"));
    let before = reads();
    let reads_by_the_load = Mutex::new((0, 0));
    let recorder = Recorder::default();
    let values = cache
        .get_or_set_many(&products, &ids, MEDIUM, |ids| {
            *reads_by_the_load.lock().expect("lock") = reads();
            recorder.load(ids)
        })
        .await
        .expect("batch");
    assert_eq!(
        recorder.calls(),
        std::slice::from_ref(&missing),
        "one call, exactly the 30"
    );
    let expected: Vec<Option<String>> = ids.iter().map(|id| Some(value(*id))).collect();
    assert_eq!(values, expected);
    // Before the load: the 100 keys read by one `MGET`, nothing else read.
    let by_the_load = *reads_by_the_load.lock().expect("lock");
    assert_eq!(by_the_load, (before.0 + 1, before.1));
    let metrics = products.metrics();
    assert_eq!((metrics.hits, metrics.misses), (70, 30));
    // Each stored key has a TTL of its own (jitter).
    let ttls: std::collections::BTreeSet<i64> = missing
        .iter()
        .map(|id| server.query(redis::cmd("PTTL").arg(products.key(id).as_str())))
        .collect();
    assert!(ttls.len() > 20, "TTLs without jitter: {ttls:?}");

    // The 30 were stored: the next batch is all hits.
    let again = cache
        .get_or_set_many(&products, &ids, MEDIUM, |ids| recorder.load(ids))
        .await
        .expect("batch");
    assert_eq!(again, expected);
    assert_eq!(recorder.calls().len(), 1);
    assert_eq!(products.metrics().hits, 170);
}

#[tokio::test]
async fn repeated_unasked_and_left_out_ids_and_an_empty_batch() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let calls = Recorder::default();
    let values: Vec<Option<String>> = cache
        .get_or_set_many(&products, &[1u64, 1, 2, 3, 3, 1], MEDIUM, |ids| {
            let calls = calls.clone();
            async move {
                let mut asked = ids.clone();
                asked.sort_unstable();
                calls.0.lock().expect("lock").push(asked);
                // 3 is left out (absent); 99 was not asked for.
                Ok::<_, std::io::Error>(HashMap::from([
                    (1, value(1)),
                    (2, value(2)),
                    (99, value(99)),
                ]))
            }
        })
        .await
        .expect("batch");
    assert_eq!(calls.calls(), [vec![1, 2, 3]], "each id asked once");
    assert_eq!(
        values,
        [
            Some(value(1)),
            Some(value(1)),
            Some(value(2)),
            None,
            None,
            Some(value(1))
        ]
    );
    assert_eq!(
        cache
            .get::<String>(&products.key(&99u64))
            .await
            .expect("get"),
        None,
        "an unasked id is not stored"
    );
    assert_eq!(
        cache
            .get::<String>(&products.key(&3u64))
            .await
            .expect("get"),
        None,
        "an absence is not cached by default"
    );

    // Again: 1 and 2 are hits at every place, 3 (not cached) is asked for once.
    let again: Vec<Option<String>> = cache
        .get_or_set_many(&products, &[1u64, 1, 2, 3, 3, 1], MEDIUM, |ids| {
            calls.load(ids)
        })
        .await
        .expect("batch");
    assert_eq!(calls.calls(), [vec![1, 2, 3], vec![3]]);
    assert_eq!(
        again,
        [
            Some(value(1)),
            Some(value(1)),
            Some(value(2)),
            Some(value(3)),
            Some(value(3)),
            Some(value(1))
        ]
    );

    let reads = || server.command_calls("mget") + server.command_calls("get");
    let before = reads();
    let empty: Vec<Option<String>> = cache
        .get_or_set_many(&products, &[] as &[u64], MEDIUM, |ids| calls.load(ids))
        .await
        .expect("empty");
    assert!(empty.is_empty());
    assert_eq!(reads(), before, "an empty batch makes no round trip");
    assert_eq!(calls.calls().len(), 2);
}

#[tokio::test]
async fn ten_thousand_ids_are_read_in_bounded_round_trips_and_loaded_once() {
    let server = RedisServer::start();
    // 30,000 commands of a debug build (and, on the in-memory backend, a debug build's
    // server), beside the other tests on two cores: under the default timeout and lease a
    // stall of the machine fails stores or lets leases lapse before their turn (counted, not
    // stored), which is not what this test is about. The release build's figures are the
    // `batch_reads` bench's.
    let config = config(&server)
        .operation_timeout(Duration::from_secs(2))
        .lease_ttl(Some(Duration::from_secs(10)));
    let cache = Cache::new(config.build().expect("config")).expect("cache");
    let products = cache.entity("product").expect("entity");
    let ids: Vec<u64> = (0..10_000).collect();
    let recorder = Recorder::default();
    let mgets = server.command_calls("mget");
    let values = cache
        .get_or_set_many(&products, &ids, MEDIUM, |ids| recorder.load(ids))
        .await
        .expect("batch");
    // The first read: 100 keys per `MGET`.
    assert_eq!(server.command_calls("mget") - mgets, 100);
    assert_eq!(values.len(), 10_000);
    assert!(
        values
            .iter()
            .zip(&ids)
            .all(|(v, id)| v.as_deref() == Some(value(*id).as_str()))
    );
    assert_eq!(recorder.calls().len(), 1);
    assert_eq!(recorder.calls()[0].len(), 10_000);
    let stored = server.cached_keys("test:v1:product:*").len();
    assert_eq!(stored, 10_000, "{:?}", products.metrics());
}

/// A batch over `ids` whose loader says when it started and answers "old" for each id once
/// released.
#[allow(clippy::type_complexity)]
fn held_batch(
    cache: &Cache,
    products: &cache_runtime::Entity,
    ids: Vec<u64>,
) -> (
    tokio::task::JoinHandle<
        Result<Vec<Option<String>>, cache_runtime::BatchError<String, std::io::Error>>,
    >,
    Arc<Notify>,
    Arc<Notify>,
) {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (cache, products) = (cache.clone(), products.clone());
    let (on_start, on_release) = (started.clone(), release.clone());
    let batch = tokio::spawn(async move {
        cache
            .get_or_set_many(&products, &ids, MEDIUM, |ids| {
                let (started, release) = (on_start.clone(), on_release.clone());
                async move {
                    started.notify_one();
                    release.notified().await;
                    let old = ids.into_iter().map(|id| (id, "old".to_owned()));
                    Ok::<_, std::io::Error>(old.collect::<HashMap<_, _>>())
                }
            })
            .await
    });
    (batch, started, release)
}

/// A load that an invalidation overtakes stores nothing: neither an id invalidation nor an
/// entity's, nor a write of the id, lets the batch's older values in.
#[tokio::test]
async fn an_invalidation_racing_a_batch_load_leaves_no_old_value() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let (batch, started, release) = held_batch(&cache, &products, vec![1, 2, 3, 4]);
    started.notified().await;
    cache
        .invalidate_id(&products, &1u64)
        .await
        .expect("invalidate");
    cache
        .set(&products.key(&2u64), &"new".to_owned(), Ttl::Medium)
        .await
        .expect("write");
    release.notify_one();
    let answered = batch.await.expect("task").expect("batch");
    assert_eq!(
        answered,
        vec![Some("old".to_owned()); 4],
        "the caller gets what it loaded"
    );
    let read = |id: u64| {
        let (cache, key) = (cache.clone(), products.key(&id));
        async move { cache.get::<String>(&key).await.expect("get") }
    };
    assert_eq!(read(1).await, None, "the invalidated id stays a miss");
    assert_eq!(read(2).await.as_deref(), Some("new"), "the write stays");
    assert_eq!(
        read(3).await.as_deref(),
        Some("old"),
        "the others are stored"
    );
    assert_eq!(products.metrics().stale_sets_prevented, 2);

    // An entity invalidation during the load covers every key of the batch.
    let (batch, started, release) = held_batch(&cache, &products, vec![11, 12, 13]);
    started.notified().await;
    cache
        .invalidate_entity(&products)
        .await
        .expect("invalidate");
    release.notify_one();
    batch.await.expect("task").expect("batch");
    for id in [11, 12, 13] {
        assert_eq!(read(id).await, None, "id {id}");
    }
}

#[tokio::test]
async fn a_failed_load_fails_only_the_missing_ids() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    for id in [1u64, 2] {
        cache
            .set(&products.key(&id), &value(id), Ttl::Medium)
            .await
            .expect("set");
    }
    let failed = cache
        .get_or_set_many(&products, &[1u64, 2, 3, 4, 5], MEDIUM, |_| async {
            Err::<HashMap<u64, String>, _>(std::io::Error::other("database down"))
        })
        .await
        .expect_err("the loader failed");
    assert_eq!(failed.error.to_string(), "database down");
    assert_eq!(
        failed.values,
        [Some(value(1)), Some(value(2)), None, None, None]
    );
    assert_eq!(products.metrics().loader_errors, 3);

    // Nothing was cached for them, and their leases were given back: loaded at once.
    let recorder = Recorder::default();
    let values = tokio::time::timeout(
        Duration::from_secs(1),
        cache.get_or_set_many(&products, &[1u64, 2, 3, 4, 5], MEDIUM, |ids| {
            recorder.load(ids)
        }),
    )
    .await
    .expect("no lease left behind")
    .expect("batch");
    assert_eq!(recorder.calls(), [vec![3, 4, 5]]);
    assert_eq!(values.len(), 5);
}

/// Batches and single reads in one process share loads: an id is loaded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_in_one_process_load_each_id_once() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let loads = Arc::new(Mutex::new(HashMap::<u64, usize>::new()));
    let mut tasks = Vec::new();
    for batch in 0..6u64 {
        let (cache, products, loads) = (cache.clone(), products.clone(), loads.clone());
        let ids: Vec<u64> = (batch * 5..batch * 5 + 20).collect();
        tasks.push(tokio::spawn(async move {
            let values = cache
                .get_or_set_many(&products, &ids, MEDIUM, |ids| {
                    let loads = loads.clone();
                    async move {
                        for id in &ids {
                            *loads.lock().expect("lock").entry(*id).or_default() += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, std::io::Error>(
                            ids.into_iter()
                                .map(|id| (id, value(id)))
                                .collect::<HashMap<_, _>>(),
                        )
                    }
                })
                .await
                .expect("batch");
            assert!(
                values
                    .iter()
                    .zip(&ids)
                    .all(|(v, id)| v.as_ref() == Some(&value(*id)))
            );
        }));
    }
    let single = {
        let (cache, key) = (cache.clone(), products.key(&7u64));
        let loads = loads.clone();
        tokio::spawn(async move {
            cache
                .get_or_set(&key, Ttl::Medium, || async move {
                    *loads.lock().expect("lock").entry(7).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::io::Error>(value(7))
                })
                .await
                .expect("single")
        })
    };
    for task in tasks {
        task.await.expect("batch task");
    }
    assert_eq!(single.await.expect("single task"), value(7));
    let loads = loads.lock().expect("lock");
    assert_eq!(loads.len(), 45, "ids 0..45 were loaded");
    assert!(
        loads.values().all(|&n| n == 1),
        "loaded more than once: {loads:?}"
    );
}

/// 4 processes, 2 batches each, over overlapping ids: every id is loaded once in all.
#[tokio::test]
async fn concurrent_batches_in_four_processes_load_each_id_once() {
    let server = RedisServer::start();
    let clients: Vec<_> = (0..4)
        .map(|process| {
            Command::new(env!("CARGO_BIN_EXE_batch_client"))
                .args([server.url(), process.to_string()])
                .spawn()
                .expect("spawn batch_client")
        })
        .collect();
    // Let every process reach the go signal before it is given.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _: () = server.query(redis::cmd("SET").arg("batch:go").arg(1));
    for mut client in clients {
        let status = tokio::task::spawn_blocking(move || client.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(status.success(), "a batch client failed: {status}");
    }
    let loads: HashMap<u64, u64> = server.query(redis::cmd("HGETALL").arg("batch:loads"));
    let expected: Vec<u64> = (0..cache_tests::batch::IDS).collect();
    let mut loaded: Vec<u64> = loads.keys().copied().collect();
    loaded.sort_unstable();
    assert_eq!(loaded, expected, "every id was loaded");
    let again: Vec<_> = loads.iter().filter(|(_, n)| **n != 1).collect();
    assert!(again.is_empty(), "loaded more than once: {again:?}");
}

#[tokio::test]
async fn with_redis_down_every_id_is_loaded_in_one_call() {
    let mut server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    server.stop();
    let recorder = Recorder::default();
    let values = cache
        .get_or_set_many(&products, &[3u64, 1, 2], MEDIUM, |ids| recorder.load(ids))
        .await
        .expect("batch");
    assert_eq!(values, [Some(value(3)), Some(value(1)), Some(value(2))]);
    assert_eq!(recorder.calls(), [vec![1, 2, 3]]);
    assert_eq!(products.metrics().fallbacks, 3);
}

#[allow(dead_code)]
fn assert_send(cache: &Cache) -> impl std::future::Future + Send + '_ {
    let products = cache.entity("product").expect("entity");
    async move {
        let recorder = Recorder::default();
        cache
            .get_or_set_many(&products, &[1u64], MEDIUM, |ids| recorder.load(ids))
            .await
    }
}

/// With `stale`, an expired id is refreshed in the caller, in the batch's one loader call, and
/// a failing source is answered with the old value (fail-safe).
#[tokio::test]
async fn stale_ids_are_refreshed_in_the_batch_or_served_when_the_source_fails() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let options =
        ReadOptions::new(Ttl::Fixed(Duration::from_millis(200))).stale(Duration::from_secs(30));
    let load = |version: &'static str| {
        move |ids: Vec<u64>| async move {
            Ok::<_, std::io::Error>(
                ids.into_iter()
                    .map(|id| (id, format!("{version} {id}")))
                    .collect::<HashMap<_, _>>(),
            )
        }
    };
    let first = cache
        .get_or_set_many(&products, &[1u64, 2], options, load("v1"))
        .await
        .expect("batch");
    assert_eq!(first, [Some("v1 1".to_owned()), Some("v1 2".to_owned())]);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let failed = cache
        .get_or_set_many(&products, &[1u64, 2], options, |_| async {
            Err::<HashMap<u64, String>, _>(std::io::Error::other("down"))
        })
        .await
        .expect("fail-safe: the old values answer");
    assert_eq!(failed, first);

    let calls = Recorder::default();
    let refreshed = cache
        .get_or_set_many(&products, &[1u64, 2, 3], options, |ids| {
            let calls = calls.clone();
            async move {
                calls.0.lock().expect("lock").push(ids.clone());
                load("v2")(ids).await
            }
        })
        .await
        .expect("batch");
    assert_eq!(
        refreshed,
        [
            Some("v2 1".to_owned()),
            Some("v2 2".to_owned()),
            Some("v2 3".to_owned())
        ]
    );
    assert_eq!(
        calls.calls().len(),
        1,
        "the stale ids and the missing one in one call"
    );
}
