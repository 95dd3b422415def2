use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Ttl};
use tokio::sync::Notify;

use crate::RedisServer;
use crate::{cache, config};

fn client(server: &RedisServer, concurrency: usize, load_ms: u64, lease: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stampede_client"))
        .args([
            server.url(),
            concurrency.to_string(),
            load_ms.to_string(),
            lease.to_owned(),
        ])
        .spawn()
        .expect("spawn stampede_client")
}

fn loader_calls(server: &RedisServer) -> i64 {
    server
        .query::<Option<i64>>(redis::cmd("GET").arg("stampede:loader_calls"))
        .unwrap_or(0)
}

/// 4 processes × 250 concurrent calls on one cold key; returns the loader calls in total.
fn storm(server: &RedisServer, lease: &str) -> i64 {
    let mut clients: Vec<Child> = (0..4).map(|_| client(server, 250, 300, lease)).collect();
    std::thread::sleep(Duration::from_millis(800)); // let every process connect and wait
    let _: () = server.query(redis::cmd("SET").arg("stampede:go").arg(1));
    for child in &mut clients {
        assert!(child.wait().expect("wait").success(), "a client failed");
    }
    loader_calls(server)
}

#[test]
fn four_processes_on_one_cold_key_make_one_loader_call_with_the_lease() {
    let server = RedisServer::start();
    assert_eq!(storm(&server, "on"), 1);
}

#[test]
fn without_the_lease_each_process_loads_once() {
    let server = RedisServer::start();
    // Single flight still holds within each process; only the lease spans processes.
    assert_eq!(storm(&server, "off"), 4);
}

#[test]
fn a_killed_lease_holder_is_taken_over_within_the_lease_time() {
    let server = RedisServer::start();
    let _: () = server.query(redis::cmd("SET").arg("stampede:go").arg(1));
    let mut holder = client(&server, 1, 60_000, "on");
    let lease_key = "{stampede:v1:product:hot}:%lease";
    let started = Instant::now();
    while !server.query::<bool>(redis::cmd("EXISTS").arg(lease_key)) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the holder never took the lease"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut waiter = client(&server, 10, 50, "on");
    std::thread::sleep(Duration::from_millis(200));
    holder.kill().expect("kill the lease holder");
    let killed_at = Instant::now();
    let status = waiter.wait().expect("wait");
    let took = killed_at.elapsed();
    assert!(status.success());
    // The lease lasts 2 s from when it was taken: nobody waits longer than that plus one load.
    assert!(
        took < Duration::from_millis(2_000 + 1_000),
        "the waiter took {took:?}"
    );
    assert_eq!(
        loader_calls(&server),
        2,
        "the dead holder's call and one takeover"
    );
    let _ = holder.wait();
}

/// The stale-set race: a reader misses and loads old data; a writer updates the source and
/// invalidates; the reader then tries to store what it loaded.
async fn stale_set_race(cache: &Cache) -> Option<String> {
    let key = cache.entity("product").expect("entity").key(&1u8);
    let source = Arc::new(std::sync::Mutex::new("old".to_owned()));
    let loaded = Arc::new(Notify::new());
    let invalidated = Arc::new(Notify::new());

    let reader = {
        let (cache, key, source) = (cache.clone(), key.clone(), source.clone());
        let (loaded, invalidated) = (loaded.clone(), invalidated.clone());
        tokio::spawn(async move {
            cache
                .get_or_set(&key, Ttl::Short, || async {
                    let value = source.lock().expect("lock").clone();
                    loaded.notify_one();
                    invalidated.notified().await;
                    Ok::<_, String>(value)
                })
                .await
        })
    };
    loaded.notified().await;
    *source.lock().expect("lock") = "new".to_owned();
    cache.delete(&key).await.expect("invalidate");
    invalidated.notify_one();
    assert_eq!(
        reader.await.expect("task").as_deref(),
        Ok("old"),
        "the reader's own answer"
    );
    cache.get::<String>(&key).await.expect("get")
}

#[tokio::test]
async fn a_write_during_a_load_voids_the_lease_so_the_old_value_is_never_stored() {
    let server = RedisServer::start();
    let cache = cache(&server);
    assert_eq!(stale_set_race(&cache).await, None);
    let metrics = cache.entity("product").expect("entity").metrics();
    assert_eq!(metrics.stale_sets_prevented, 1);
    assert_eq!(
        server.scan("*%loaded*"),
        Vec::<String>::new(),
        "the refused value is not left beside the key"
    );
}

/// A populate writes the value beside the key and moves it under the key in one step: the
/// key holds it with its TTL, and nothing is left beside it, lease included.
#[tokio::test]
async fn a_populate_moves_the_value_under_the_key_and_ends_the_lease() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let key = cache.entity("product").expect("entity").key(&7u8);
    let value = cache
        .get_or_set(&key, Ttl::Short, || async {
            Ok::<_, String>("seven".to_owned())
        })
        .await;
    assert_eq!(value.as_deref(), Ok("seven"));
    assert_eq!(server.scan("*product:7*"), vec![key.as_str().to_owned()]);
    let ttl: i64 = server.query(redis::cmd("PTTL").arg(key.as_str()));
    assert!(
        ttl > 0,
        "the value keeps the TTL it was written with: {ttl}"
    );
    assert_eq!(
        cache.get::<String>(&key).await.expect("get").as_deref(),
        Some("seven")
    );
}

#[tokio::test]
async fn without_leases_the_race_stores_the_old_value() {
    let server = RedisServer::start();
    let cache =
        Cache::new(config(&server).lease_ttl(None).build().expect("config")).expect("cache");
    assert_eq!(stale_set_race(&cache).await.as_deref(), Some("old"));
}

#[tokio::test]
async fn a_source_slower_than_the_lease_is_still_cached() {
    let server = RedisServer::start();
    let cache = Cache::new(
        config(&server)
            .lease_ttl(Some(Duration::from_millis(150)))
            .build()
            .expect("config"),
    )
    .expect("cache");
    let key = cache.entity("report").expect("entity").key(&1u32);
    for _ in 0..2 {
        let value = cache
            .get_or_set(&key, Ttl::Medium, || async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<_, String>("slow".to_owned())
            })
            .await;
        assert_eq!(value.as_deref(), Ok("slow"));
    }
    let metrics = cache.entity("report").expect("entity").metrics();
    assert_eq!(
        (
            metrics.loader_calls,
            metrics.hits,
            metrics.stale_sets_prevented
        ),
        (1, 1, 0),
        "the lease was kept alive through the load, so its value was stored"
    );
}

#[tokio::test]
async fn a_value_loaded_without_the_lease_is_returned_and_never_stored() {
    let server = RedisServer::start();
    let cache = Cache::new(
        config(&server)
            .lease_ttl(Some(Duration::from_millis(100)))
            .build()
            .expect("config"),
    )
    .expect("cache");
    let key = cache.entity("product").expect("entity").key(&1u32);
    // Another process holds the lease for as long as this test runs, and its load counts as
    // current (its epoch is far ahead), so it is waited for, never taken over.
    let _: () = server.query(
        redis::cmd("SET")
            .arg("{test:v1:product:1}:%lease")
            .arg("00000000000000ff:99999999999999999:0")
            .arg("PX")
            .arg(60_000),
    );
    let value = cache
        .get_or_set(&key, Ttl::Medium, || async {
            Ok::<_, String>("loaded".to_owned())
        })
        .await;
    assert_eq!(
        value.as_deref(),
        Ok("loaded"),
        "the caller still gets its value"
    );
    let stored: Option<Vec<u8>> = server.query(redis::cmd("GET").arg("test:v1:product:1"));
    assert_eq!(
        stored, None,
        "stored without a lease, it could be a stale set"
    );
}

/// A lease held by a load that started before an entity invalidation (its token records an
/// epoch below the entity's mark), or one whose token cannot be read, is taken over at once:
/// that load could only store an invalid value, so it is not waited for. The new load stores
/// its value and ends the lease.
#[tokio::test]
async fn a_lease_held_by_an_older_load_is_taken_over_at_once() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    cache
        .invalidate_entity(&products)
        .await
        .expect("raise the mark");
    for (id, held) in [(1u8, "00000000000000ff:1:0"), (2, "not a token")] {
        let key = products.key(&id);
        let _: () = server.query(
            redis::cmd("SET")
                .arg(format!("{{{}}}:%lease", key.as_str()))
                .arg(held)
                .arg("PX")
                .arg(60_000),
        );
        let started = std::time::Instant::now();
        let value = cache
            .get_or_set(&key, Ttl::Medium, || async { Ok::<_, String>(id) })
            .await;
        assert_eq!(value, Ok(id));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not waited for: {:?}",
            started.elapsed()
        );
        assert_eq!(
            cache.get::<u8>(&key).await.expect("get"),
            Some(id),
            "stored"
        );
        let lease: Option<String> =
            server.query(redis::cmd("GET").arg(format!("{{{}}}:%lease", key.as_str())));
        assert_eq!(lease, None, "the new load's lease ended with its populate");
    }
}
