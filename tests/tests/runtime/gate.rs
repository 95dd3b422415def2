//! The one gate: a value loaded before an invalidation never reaches a caller once the
//! invalidation has returned, whichever door it comes through (another instance's flight, a
//! pattern invalidation's scan, a forced refresh).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, ReadOptions, Ttl, cached, refreshing, with_cache};
use tokio::sync::Notify;

use crate::RedisServer;
use crate::{cache, cut_the_bus, subscribed};

const PLAIN: ReadOptions = ReadOptions::new(Ttl::Medium);
/// Longer than an event takes between two instances on loopback (~13 µs p50), by far.
const BUS_DELAY: Duration = Duration::from_millis(30);

/// Starts a read of `id` on `cache` whose loader answers `value` once `gate` opens, and waits
/// until that loader runs.
async fn slow_read(
    cache: &Cache,
    id: u32,
    value: &'static str,
    gate: Arc<Notify>,
) -> tokio::task::JoinHandle<String> {
    let started = Arc::new(Notify::new());
    let task = tokio::spawn({
        let (cache, started) = (cache.clone(), Arc::clone(&started));
        async move {
            let key = cache.entity("product").expect("entity").key(&id);
            cache
                .get_or_set_with(&key, PLAIN, || async move {
                    started.notify_one();
                    gate.notified().await;
                    Ok::<_, String>(value.to_owned())
                })
                .await
                .expect("value")
        }
    });
    started.notified().await;
    task
}

/// A read of `id` on `cache` whose loader answers `value` at once; fails after 5 s (a read
/// waiting on a gate that nobody opens).
async fn read(cache: &Cache, id: u32, value: &'static str) -> String {
    let key = cache.entity("product").expect("entity").key(&id);
    let read = cache.get_or_set_with(
        &key,
        PLAIN,
        || async move { Ok::<_, String>(value.to_owned()) },
    );
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the read hung")
        .expect("value")
}

/// Opens `gate` after `delay`, on its own task.
fn open_later(gate: &Arc<Notify>, delay: Duration) {
    let gate = Arc::clone(gate);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        gate.notify_one();
    });
}

#[tokio::test]
async fn a_read_on_another_instance_does_not_join_a_load_older_than_an_invalidation() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server), cache(&server));
    subscribed(&[&a, &b]).await;
    let products = a.entity("product").expect("entity");
    for (id, kind) in ["id", "entity", "delete", "all"].into_iter().enumerate() {
        let id = u32::try_from(id).expect("small");
        let gate = Arc::new(Notify::new());
        let old = slow_read(&b, id, "old", Arc::clone(&gate)).await;
        match kind {
            "id" => a.invalidate_id(&products, &id).await.map(drop),
            "entity" => a.invalidate_entity(&products).await.map(drop),
            "delete" => a.delete(&products.key(&id)).await.map(drop),
            _ => a.invalidate_all().await.map(drop),
        }
        .expect("invalidate");
        tokio::time::sleep(BUS_DELAY).await;
        // Before the fix b's read joined the old flight and answered "old": 40 of 40 rounds.
        open_later(&gate, Duration::from_millis(100));
        assert_eq!(
            read(&b, id, "new").await,
            "new",
            "after a {kind} invalidation"
        );
        assert_eq!(old.await.expect("task"), "old", "it started before");
        assert_eq!(
            read(&a, id, "unused").await,
            "new",
            "{kind}: old store refused"
        );
        assert_eq!(
            read(&b, id, "unused").await,
            "new",
            "{kind}: old store refused"
        );
    }
}

#[tokio::test]
async fn a_pattern_invalidation_racing_a_load_leaves_no_old_value() {
    let server = RedisServer::start();
    // A keyspace whose scan takes a while: the load stores in the middle of it.
    let mut connection = server.connection().expect("connection");
    for chunk in 0..20 {
        let mut mset = redis::cmd("MSET");
        for n in 0..10_000 {
            mset.arg(format!("filler:{chunk}:{n}")).arg("x");
        }
        let () = mset.query(&mut connection).expect("fill");
    }
    let (a, b) = (cache(&server), cache(&server));
    subscribed(&[&a, &b]).await;
    let products = a.entity("product").expect("entity");
    for round in 0..8 {
        let gate = Arc::new(Notify::new());
        let old = slow_read(&b, round, "old", Arc::clone(&gate)).await;
        // The old load stores somewhere in the scan: early, middle, late.
        open_later(&gate, Duration::from_millis(5 + 15 * u64::from(round)));
        // (A glob that spares the entity's mark, which is another door.)
        a.invalidate_matching(&products, "[0-9]*")
            .await
            .expect("invalidate");
        assert_eq!(old.await.expect("task"), "old", "it started before");
        // Before the fix the old load stored while the keys were scanned, and its lease was
        // only removed afterwards: 8 of 8 rounds with 200k keys.
        assert_eq!(read(&a, round, "new").await, "new", "round {round}");
        assert_eq!(read(&b, round, "unused").await, "new", "round {round}");
    }
}

#[tokio::test]
async fn a_pattern_invalidation_never_deletes_the_entitys_mark() {
    let server = RedisServer::start();
    let a = cache(&server);
    let products = a.entity("product").expect("entity");
    a.invalidate_entity(&products).await.expect("invalidate");
    let mark_key = "test:v1:product:%mark";
    let mark: Option<u64> = server.query(redis::cmd("GET").arg(mark_key));
    assert!(mark.is_some(), "the mark exists");
    assert_eq!(read(&a, 1, "one").await, "one");
    a.invalidate_matching(&products, "*")
        .await
        .expect("invalidate");
    // Before the fix the mark went with the values, and a fresh instance recreated it above
    // every value the running ones wrote afterwards.
    let after: Option<u64> = server.query(redis::cmd("GET").arg(mark_key));
    assert_eq!(after, mark, "the mark stayed as it was");
    assert!(server.cached_keys("test:v1:product:*").is_empty());
}

static ROW: AtomicU32 = AtomicU32::new(1);
static ROW_READ: AtomicBool = AtomicBool::new(false);
static ROW_GATE: std::sync::LazyLock<Notify> = std::sync::LazyLock::new(Notify::new);

/// Reads the row; the first read of version 1 then waits for the gate (a slow query).
#[cached(entity = "row", key = "{id}")]
async fn row(id: u32) -> u32 {
    let _ = id;
    let version = ROW.load(Ordering::SeqCst);
    if version == 1 && !ROW_READ.swap(true, Ordering::SeqCst) {
        ROW_GATE.notified().await;
    }
    version
}

#[tokio::test]
async fn a_forced_refresh_that_read_before_an_invalidation_does_not_store() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let refresh = tokio::spawn(with_cache(cache.clone(), refreshing(row(1))));
    while !ROW_READ.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    ROW.store(2, Ordering::SeqCst);
    let rows = cache.entity("row").expect("entity");
    cache.invalidate_id(&rows, &1u32).await.expect("invalidate");
    ROW_GATE.notify_one();
    assert_eq!(refresh.await.expect("task"), 1, "it read before the write");
    // Before the fix the refresh stored with a plain SET: 10 of 10 reads answered 1.
    assert_eq!(with_cache(cache.clone(), row(1)).await, 2);
    assert_eq!(with_cache(cache, row(1)).await, 2);
}

#[tokio::test]
async fn a_recreated_mark_reaches_the_running_instances() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server), cache(&server));
    subscribed(&[&a, &b]).await;
    let products = a.entity("product").expect("entity");
    assert_eq!(
        read(&a, 1, "a's").await,
        "a's",
        "a reads (and trusts) the mark"
    );
    // The mark is lost (evicted, expired); a new instance recreates it as "invalidated now".
    let _: u64 = server.query(redis::cmd("DEL").arg("test:v1:product:%mark"));
    let fresh = cache(&server);
    subscribed(&[&fresh]).await;
    assert_eq!(read(&fresh, 2, "fresh's").await, "fresh's");
    tokio::time::sleep(BUS_DELAY).await;
    // Before the fix a kept stamping with the epoch it knew, below the new mark: every value
    // it wrote afterwards was a miss for the new instance, 150 of 150.
    for id in 10..40u32 {
        a.set(&products.key(&id), "written", Ttl::Medium)
            .await
            .expect("set");
        assert_eq!(read(&fresh, id, "reloaded").await, "written", "id {id}");
        assert_eq!(read(&b, id, "reloaded").await, "written", "id {id}");
    }
}

#[tokio::test]
async fn a_redis_restarted_from_an_older_snapshot_serves_nothing_invalidated_since() {
    let dir = std::env::temp_dir().join(format!("cache-gate-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("snapshot dir");
    let mut server = RedisServer::start_with_args(&["--dir", dir.to_str().expect("utf-8")]);
    let (a, b) = (cache(&server), cache(&server));
    subscribed(&[&a, &b]).await;
    let products = a.entity("product").expect("entity");
    let lists = a.entity("list").expect("entity");
    let list_key = lists.key(&7u32);
    assert_eq!(read(&a, 1, "old").await, "old");
    a.set(&list_key, "old", Ttl::Medium).await.expect("set");
    let () = server.query(&redis::cmd("SAVE"));
    // After the snapshot: an id invalidation and an entity invalidation.
    a.invalidate_id(&products, &1u32).await.expect("invalidate");
    a.invalidate_entity(&lists).await.expect("invalidate");
    server.restart();
    let rolled_back: Option<Vec<u8>> = server.query(redis::cmd("GET").arg("test:v1:product:1"));
    assert!(rolled_back.is_some(), "Redis holds the deleted value again");
    let c = cache(&server);
    for (name, instance) in [("a", &a), ("b", &b), ("c", &c)] {
        // Redis answers again (the breaker may have opened while it was down).
        let started = std::time::Instant::now();
        while instance.get::<String>(&products.key(&0u32)).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name}: Redis never came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Before the fence 3 of 4 of these reads answered "old".
        assert_eq!(
            read(instance, 1, "new").await,
            "new",
            "{name}: the invalidated id"
        );
        let list = instance
            .get_or_set_with(&list_key, PLAIN, || async {
                Ok::<_, String>("new".to_owned())
            })
            .await
            .expect("value");
        assert_eq!(list, "new", "{name}: the invalidated entity");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn with_its_bus_down_an_instance_hands_over_no_load_an_id_invalidation_overtook() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server), cache(&server));
    subscribed(&[&a, &b]).await;
    // Every subscription is cut and cannot come back: b never hears of a's invalidation.
    cut_the_bus(&server);
    let cut = std::time::Instant::now();
    while b.invalidation_bus_connected() {
        assert!(cut.elapsed() < Duration::from_secs(2), "the bus stayed up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gate = Arc::new(Notify::new());
    let old = slow_read(&b, 1, "old", Arc::clone(&gate)).await;
    let products = a.entity("product").expect("entity");
    a.invalidate_id(&products, &1u32).await.expect("invalidate");
    open_later(&gate, Duration::from_millis(100));
    // Before, this read joined b's flight and answered "old": the event that detaches it was
    // lost. Now the flight hands its value over only once stored under its lease, which the
    // invalidation deleted.
    assert_eq!(read(&b, 1, "new").await, "new");
    assert_eq!(old.await.expect("task"), "old", "it started before");
    assert_eq!(read(&a, 1, "unused").await, "new");
}

#[tokio::test]
async fn an_idle_instance_compares_the_redis_run_id_every_heartbeat() {
    let server = RedisServer::start();
    let a = cache(&server);
    subscribed(&[&a]).await;
    let before = server.command_calls("info");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Each `command_calls` is an `INFO` too: one of them lands in the count.
    let infos = server.command_calls("info") - before;
    assert!(
        (3..=6).contains(&infos),
        "{infos} INFO calls in 3.5 s: about one a heartbeat"
    );
}
