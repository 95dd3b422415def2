//! Degraded modes end: a stall does not turn the local tier off for good, a slow lease holder
//! is waited for, and a flush keeps its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{BreakerState, Cache, CacheConfigBuilder, ReadOptions, Ttl};

use crate::{config, cut_the_bus, subscribed};
use cache_tests::RedisServer;

/// A cache whose breaker opens after two 100 ms timeouts and stays open for `cooldown`.
fn trips_fast(server: &RedisServer, cooldown: Duration) -> CacheConfigBuilder {
    config(server)
        .operation_timeout(Duration::from_millis(100))
        .breaker_threshold(2)
        .breaker_cooldown(cooldown)
}

/// Pauses `server` for `pause` and reads until `cache`'s breaker is open.
async fn open_breaker(server: &RedisServer, cache: &Cache, pause: Duration) {
    server.pause(pause);
    let probe = cache.entity("probe").expect("entity").key(&0u8);
    while cache.breaker_state() != BreakerState::Open {
        let _ = cache.get::<u8>(&probe).await;
    }
}

/// Waits until `cache`'s local tier is on (`true`) or off, at most `within`.
async fn tier_becomes(cache: &Cache, on: bool, within: Duration) -> bool {
    let started = Instant::now();
    while cache.invalidation_bus_connected() != on {
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn a_stall_that_opens_the_breaker_turns_the_local_tier_off_only_until_it_ends() {
    let server = RedisServer::start();
    // Open past two heartbeats: their echoes are refused, and the tier stays off for a second
    // at least (an echo resent once the breaker closes is back in a millisecond).
    let config = trips_fast(&server, Duration::from_secs(3));
    let cache = Cache::new(config.build().expect("config")).expect("cache");
    subscribed(&[&cache]).await;
    open_breaker(&server, &cache, Duration::from_millis(350)).await;
    assert!(
        tier_becomes(&cache, false, Duration::from_secs(4)).await,
        "the lost echo turned the tier off"
    );
    // Before the fix no echo was sent again: off for as long as the process lived.
    assert!(
        tier_becomes(&cache, true, Duration::from_secs(6)).await,
        "an echo resent after the stall turned it back on"
    );
}

#[tokio::test]
async fn a_lease_renewed_by_a_slow_holder_is_waited_for() {
    let server = RedisServer::start();
    let lease = Duration::from_millis(300);
    let instance = || {
        Cache::new(
            config(&server)
                .lease_ttl(Some(lease))
                .build()
                .expect("config"),
        )
        .expect("cache")
    };
    let (holder, waiter) = (instance(), instance());
    let calls = Arc::new(AtomicUsize::new(0));
    let read = |cache: Cache| {
        let calls = Arc::clone(&calls);
        async move {
            let key = cache.entity("report").expect("entity").key(&1u8);
            let options = ReadOptions::new(Ttl::Medium);
            cache
                .get_or_set_with(&key, options, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // A source five lease times slow: its holder renews the lease meanwhile.
                    tokio::time::sleep(lease * 5).await;
                    Ok::<_, String>("report".to_owned())
                })
                .await
                .expect("value")
        }
    };
    let first = tokio::spawn(read(holder));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiters: Vec<_> = (0..4).map(|_| tokio::spawn(read(waiter.clone()))).collect();
    assert_eq!(first.await.expect("task"), "report");
    for waiter in waiters {
        assert_eq!(waiter.await.expect("task"), "report");
    }
    // Before the fix the waiters gave up after two lease times and called the source too
    // (4 calls instead of 1 with a 5 s source and a 2 s lease).
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one source call in all");
}

#[tokio::test]
async fn flush_pending_keeps_its_deadline_with_a_long_backlog() {
    let server = RedisServer::start();
    let config = trips_fast(&server, Duration::from_millis(200)).replay_capacity(30_000);
    let cache = Cache::new(config.build().expect("config")).expect("cache");
    let products = cache.entity("product").expect("entity");
    // Paused for longer than the backlog takes to build (about 0.2 s in a debug build, and
    // more on a busy machine): no invalidation may reach Redis meanwhile.
    let pause = Duration::from_millis(1500);
    let paused_at = Instant::now();
    open_breaker(&server, &cache, pause).await;
    for id in 0..20_000u32 {
        let _ = cache.invalidate_id(&products, &id).await;
    }
    assert!(
        paused_at.elapsed() < pause,
        "the backlog took longer than the pause"
    );
    assert!(cache.pending_invalidations() > 19_000, "kept for replay");
    tokio::time::sleep_until((paused_at + pause + Duration::from_millis(300)).into()).await;
    let started = Instant::now();
    let left = cache.flush_pending(Duration::from_millis(200)).await;
    let took = started.elapsed();
    // Before the fix it returned after 3.5 s: the replay loop never looked at the deadline.
    // One operation timeout past it is the most a command under way may add.
    assert!(
        took < Duration::from_millis(200 + 100 + 200),
        "flush_pending(200 ms) took {took:?}"
    );
    assert!(left > 0, "a backlog this long is not sent in 200 ms");
    assert_eq!(cache.flush_pending(Duration::from_secs(30)).await, 0);
}

#[tokio::test]
async fn get_many_with_the_bus_down_reads_each_mark_once() {
    let server = RedisServer::start();
    let cache = crate::cache(&server);
    subscribed(&[&cache]).await;
    let products = cache.entity("product").expect("entity");
    let keys: Vec<_> = (0..100u32).map(|id| products.key(&id)).collect();
    for key in &keys {
        cache.set(key, "value", Ttl::Medium).await.expect("set");
    }
    // The subscriber is cut and cannot come back: no mark held in process is trusted.
    cut_the_bus(&server);
    assert!(
        tier_becomes(&cache, false, Duration::from_secs(2)).await,
        "the bus went down"
    );
    // Marks are read as `GET` + `PEXPIRE`: count the `PEXPIRE`s.
    let before = server.command_calls("pexpire");
    let values = cache.get_many::<String>(&keys).await.expect("get_many");
    let mark_reads = server.command_calls("pexpire") - before;
    assert!(values.iter().all(|v| v.as_deref() == Some("value")));
    // Before the fix: 200 (the entity's and the app's mark, once per key).
    assert_eq!(mark_reads, 2, "the entity's mark and the app's, once each");
}

#[tokio::test]
async fn single_flight_holds_while_the_breaker_is_open_and_the_bus_connected() {
    let server = RedisServer::start();
    let config = trips_fast(&server, Duration::from_secs(3));
    let cache = Cache::new(config.build().expect("config")).expect("cache");
    subscribed(&[&cache]).await;
    let products = cache.entity("product").expect("entity");
    let warm = cache
        .get_or_set(&products.key(&0u32), Ttl::Medium, || async {
            Ok::<_, String>(0u32)
        })
        .await;
    assert_eq!(warm, Ok(0), "the marks are read and trusted");
    open_breaker(&server, &cache, Duration::from_millis(300)).await;
    assert!(
        cache.invalidation_bus_connected(),
        "a short stall keeps the bus"
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let (cache, calls, key) = (cache.clone(), Arc::clone(&calls), products.key(&1u32));
            tokio::spawn(async move {
                cache
                    .get_or_set(&key, Ttl::Medium, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, String>(1u32)
                    })
                    .await
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.await.expect("task"), Ok(1));
    }
    assert_eq!(
        cache.breaker_state(),
        BreakerState::Open,
        "all of it with the breaker open"
    );
    // An unstored value once carried epoch 0, below every trusted mark: each follower refused
    // it and led a load of its own, one after another.
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one source call");
}
