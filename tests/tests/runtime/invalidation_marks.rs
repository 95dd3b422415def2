//! Entity, tag and id invalidation through marks and tokens: what other instances see, what an
//! instance whose bus is down sees, and that nothing loaded before an invalidation is served
//! after it returned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, ReadOptions, Ttl};
use tokio::sync::Notify;

use crate::RedisServer;
use crate::{cache, cut_the_bus, subscribed};

const PLAIN: ReadOptions = ReadOptions::new(Ttl::Medium);
const LOCAL: ReadOptions = ReadOptions::new(Ttl::Medium).local();

async fn read(cache: &Cache, id: u32, options: ReadOptions, value: &str) -> String {
    let key = cache.entity("product").expect("entity").key(&id);
    let value = value.to_owned();
    cache
        .get_or_set_with(&key, options, || async { Ok::<_, String>(value) })
        .await
        .expect("value")
}

#[tokio::test]
async fn an_entity_invalidation_reaches_the_redis_reads_of_another_instance() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server), cache(&server));
    subscribed(&[&a, &b]).await;
    assert_eq!(read(&b, 1, PLAIN, "old").await, "old");
    assert_eq!(read(&b, 1, PLAIN, "unused").await, "old", "a hit");
    a.invalidate_entity(&a.entity("product").expect("entity"))
        .await
        .expect("invalidate");
    // Within the bus delay, b learns the new mark and its Redis reads miss.
    let started = Instant::now();
    while read(&b, 1, PLAIN, "new").await != "new" {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "b kept the old value"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        read(&a, 1, PLAIN, "unused").await,
        "new",
        "a reads b's reload"
    );
}

#[tokio::test]
async fn with_its_bus_down_an_instance_reads_marks_from_redis() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server), cache(&server));
    subscribed(&[&a, &b]).await;
    assert_eq!(read(&b, 1, PLAIN, "old").await, "old");
    // b's subscriber connection is cut and cannot come back: every pub/sub client is killed
    // and a's is not needed here.
    cut_the_bus(&server);
    let started = Instant::now();
    while b.invalidation_bus_connected() {
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.invalidate_entity(&a.entity("product").expect("entity"))
        .await
        .expect("invalidate");
    assert_eq!(
        read(&b, 1, PLAIN, "new").await,
        "new",
        "no event reached b, yet its very next read misses"
    );
}

#[tokio::test]
async fn marks_lost_from_redis_read_as_invalidated_now() {
    let server = RedisServer::start();
    let a = cache(&server);
    assert_eq!(read(&a, 1, PLAIN, "old").await, "old");
    // Eviction (or a failover) takes the bookkeeping and keeps the value.
    let _: i64 = server.query(
        redis::cmd("DEL")
            .arg("test:v1:product:%mark")
            .arg("{test:%mark}:%epoch"),
    );
    let fresh = cache(&server);
    assert_eq!(
        read(&fresh, 1, PLAIN, "new").await,
        "new",
        "a value whose validity cannot be established is a miss"
    );
}

#[tokio::test]
async fn variants_whose_token_was_lost_are_not_served() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let pages = cache.entity("page").expect("entity");
    for page in ["p1", "p2"] {
        cache
            .set(&pages.variant_key(&7u32, page), &1u8, Ttl::Medium)
            .await
            .expect("set");
    }
    // Eviction takes the id's bookkeeping and leaves its variants.
    let lost: Vec<String> = server
        .scan("*")
        .into_iter()
        .filter(|key| key.contains("page") && key.contains('%'))
        .collect();
    assert!(
        !lost.is_empty(),
        "the id keeps bookkeeping for its variants"
    );
    let _: i64 = server.query(redis::cmd("DEL").arg(&lost));
    cache
        .invalidate_id(&pages, &7u32)
        .await
        .expect("invalidate");
    for page in ["p1", "p2"] {
        let value: Option<u8> = cache
            .get(&pages.variant_key(&7u32, page))
            .await
            .expect("get");
        assert_eq!(value, None, "{page} outlived its id's invalidation");
    }
}

/// A loader that reads the "database" when it starts and then waits for a gate.
struct SlowLoad {
    db: Arc<Mutex<String>>,
    started: Arc<AtomicBool>,
    gate: Arc<Notify>,
}

impl SlowLoad {
    fn new(value: &str) -> Self {
        Self {
            db: Arc::new(Mutex::new(value.to_owned())),
            started: Arc::new(AtomicBool::new(false)),
            gate: Arc::new(Notify::new()),
        }
    }

    fn current(&self) -> String {
        self.db.lock().expect("db").clone()
    }

    /// Starts a read of `key` whose load reads the database, then waits for the gate.
    fn spawn_read(
        &self,
        cache: &Cache,
        key: &cache_runtime::CacheKey,
    ) -> tokio::task::JoinHandle<String> {
        let (cache, key) = (cache.clone(), key.clone());
        let (db, started, gate) = (self.db.clone(), self.started.clone(), self.gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_set_with(&key, LOCAL, || async move {
                    let value = db.lock().expect("db").clone();
                    started.store(true, Ordering::SeqCst);
                    gate.notified().await;
                    Ok::<_, String>(value)
                })
                .await
                .expect("value")
        })
    }

    async fn until_started(&self) {
        while !self.started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The read-your-writes rounds: a slow load of the old value in flight, the write and its
/// invalidation by `invalidate`, then a read from the same task.
async fn read_your_writes(
    cache: &Cache,
    invalidate: impl AsyncFn(&Cache, &cache_runtime::Entity, u32),
) {
    let products = cache.entity("product").expect("entity");
    for id in 0..100u32 {
        let key = products.key(&id);
        let load = SlowLoad::new("old");
        let slow = load.spawn_read(cache, &key);
        load.until_started().await;
        *load.db.lock().expect("db") = "new".to_owned();
        invalidate(cache, &products, id).await;
        let read = cache.get_or_set_with(&key, LOCAL, || async { Ok::<_, String>(load.current()) });
        // Joining the old load would wait for its gate, which only opens below.
        let read = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the read waited for the load that started before the write")
            .expect("value");
        assert_eq!(read, "new", "round {id}: a read after the write");
        load.gate.notify_one();
        assert_eq!(
            slow.await.expect("task"),
            "old",
            "it started before the write"
        );
        let again = cache
            .get_or_set_with(&key, LOCAL, || async { Ok::<_, String>(load.current()) })
            .await
            .expect("value");
        assert_eq!(again, "new", "round {id}: the old load stored nothing");
    }
}

#[tokio::test]
async fn a_read_after_an_id_invalidation_never_gets_a_load_started_before_it() {
    let server = RedisServer::start();
    let cache = cache(&server);
    subscribed(&[&cache]).await;
    read_your_writes(&cache, async |cache, products, id| {
        cache
            .invalidate_id(products, &id)
            .await
            .expect("invalidate");
    })
    .await;
}

#[tokio::test]
async fn a_read_after_an_entity_invalidation_never_gets_a_load_started_before_it() {
    let server = RedisServer::start();
    let cache = cache(&server);
    subscribed(&[&cache]).await;
    read_your_writes(&cache, async |cache, products, _| {
        cache.invalidate_entity(products).await.expect("invalidate");
    })
    .await;
}

#[tokio::test]
async fn the_writers_own_local_tier_is_not_refilled_with_the_old_value() {
    let server = RedisServer::start();
    // Three connections, taken in turn: of the three reads below, at least one goes out on a
    // connection the paused UNLINK does not hold up (on one connection all would wait behind
    // it, and the race this test is about could not happen).
    let cache =
        Cache::new(crate::config(&server).pool_size(3).build().expect("config")).expect("cache");
    subscribed(&[&cache]).await;
    let products = cache.entity("product").expect("entity");
    for round in 0..10u32 {
        assert_eq!(read(&cache, round, LOCAL, "old").await, "old");
        // The invalidation's UNLINK waits on the pause; reads still go through.
        let _: () = server.query(redis::cmd("CLIENT").arg("PAUSE").arg(150).arg("WRITE"));
        let invalidation = {
            let (cache, products) = (cache.clone(), products.clone());
            tokio::spawn(async move { cache.invalidate_id(&products, &round).await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Local misses, at least one of whose GETs is answered with the old value.
        let during = tokio::join!(
            read(&cache, round, LOCAL, "new"),
            read(&cache, round, LOCAL, "new"),
            read(&cache, round, LOCAL, "new"),
        );
        assert!(
            [during.0, during.1, during.2].contains(&"old".to_owned()),
            "round {round}: a read during the invalidation got the old value from Redis"
        );
        invalidation.await.expect("task").expect("invalidate");
        for _ in 0..3 {
            assert_eq!(
                read(&cache, round, LOCAL, "new").await,
                "new",
                "round {round}: after the invalidation returned"
            );
        }
    }
}

#[tokio::test]
async fn a_pattern_invalidation_voids_the_lease_of_a_load_in_progress() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let key = products.key(&1u32);
    let load = SlowLoad::new("old");
    let slow = load.spawn_read(&cache, &key);
    load.until_started().await;
    let removed = cache
        .invalidate_matching(&products, "1")
        .await
        .expect("invalidate");
    assert_eq!(removed, 0, "nothing was stored yet");
    load.gate.notify_one();
    assert_eq!(slow.await.expect("task"), "old");
    let stored: Option<String> = cache.get(&key).await.expect("get");
    assert_eq!(
        stored, None,
        "the load that started before it stored nothing"
    );
}
