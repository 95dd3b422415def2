use std::time::{Duration, Instant};

use cache_runtime::{BreakerState, Cache, CacheError, Ttl};

use crate::{CountingLoader, config};
use cache_tests::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(200);
const COOLDOWN: Duration = Duration::from_millis(500);
/// Scheduling slack on a loaded two-core machine; far below anything a hung Redis would cost.
const SLACK: Duration = Duration::from_millis(150);

fn fragile_cache(server: &RedisServer) -> Cache {
    Cache::new(
        config(server)
            .operation_timeout(TIMEOUT)
            .breaker_threshold(3)
            .breaker_cooldown(COOLDOWN)
            .build()
            .expect("config"),
    )
    .expect("cache")
}

/// Calls `get_or_set` and checks it answered with the loader's value within the deadline.
async fn read_through(cache: &Cache, loader: &CountingLoader, id: u32) -> Duration {
    let key = cache.entity("product").expect("entity").key(&id);
    let started = Instant::now();
    let value = cache
        .get_or_set(&key, Ttl::Short, || loader.load(format!("product {id}")))
        .await
        .expect("the loader's value, whatever Redis does");
    assert_eq!(value, format!("product {id}"));
    started.elapsed()
}

#[tokio::test]
async fn redis_stopped_mid_test_falls_back_opens_the_breaker_and_recovers() {
    let mut server = RedisServer::start();
    let cache = fragile_cache(&server);
    let loader = CountingLoader::default();
    read_through(&cache, &loader, 1).await;
    read_through(&cache, &loader, 1).await;
    assert_eq!(loader.calls(), 1, "second read is a hit");

    server.stop();
    for _ in 0..10 {
        let took = read_through(&cache, &loader, 1).await;
        assert!(took <= TIMEOUT + SLACK, "a call waited {took:?}");
    }
    assert_eq!(loader.calls(), 11, "every call reached the source");
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    assert!(matches!(
        cache
            .get::<String>(&cache.entity("product").expect("entity").key(&1u32))
            .await,
        Err(CacheError::BreakerOpen)
    ));
    let metrics = cache.entity("product").expect("entity").metrics();
    assert_eq!(metrics.fallbacks, 10);

    server.restart();
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    read_through(&cache, &loader, 2).await; // the probe: a miss, stored
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    read_through(&cache, &loader, 2).await;
    assert_eq!(
        loader.calls(),
        12,
        "caching resumed: the second read was a hit"
    );
    assert_eq!(server.cached_keys("*"), vec!["test:v1:product:2"]);
}

#[tokio::test]
async fn a_paused_redis_costs_at_most_the_timeout_per_call_until_the_breaker_opens() {
    let server = RedisServer::start();
    let cache = fragile_cache(&server);
    let loader = CountingLoader::default();
    read_through(&cache, &loader, 1).await; // connect first

    server.pause(Duration::from_secs(3));
    let mut durations = Vec::new();
    for id in 0..6 {
        durations.push(read_through(&cache, &loader, id).await);
    }
    for took in &durations {
        assert!(*took <= TIMEOUT + SLACK, "a call waited {took:?}");
    }
    // The first three time out; once open, the breaker answers without waiting at all.
    assert!(durations[0] >= TIMEOUT, "{:?}", durations[0]);
    assert!(durations[5] < TIMEOUT / 4, "{:?}", durations[5]);
    assert_eq!(cache.breaker_state(), BreakerState::Open);
    assert_eq!(loader.calls(), 7);
}

#[tokio::test]
async fn explicit_calls_report_timeouts_as_typed_errors() {
    let server = RedisServer::start();
    let cache = fragile_cache(&server);
    let key = cache.entity("product").expect("entity").key(&1u8);
    cache.set(&key, &1u8, Ttl::Short).await.expect("set");

    server.pause(Duration::from_secs(2));
    let err = cache.get::<u8>(&key).await.expect_err("paused");
    assert!(matches!(err, CacheError::Timeout(TIMEOUT)), "{err}");
    assert!(err.is_connection_class());
}

#[tokio::test]
async fn a_cache_built_while_redis_is_down_works_and_connects_later() {
    let mut server = RedisServer::start();
    server.stop();
    let cache = fragile_cache(&server);
    let loader = CountingLoader::default();

    read_through(&cache, &loader, 1).await;
    let key = cache.entity("product").expect("entity").key(&1u32);
    let err = cache.get::<String>(&key).await.expect_err("down");
    assert!(err.is_connection_class(), "{err}");

    server.restart();
    tokio::time::sleep(COOLDOWN + Duration::from_millis(50)).await;
    read_through(&cache, &loader, 1).await;
    read_through(&cache, &loader, 1).await;
    assert_eq!(loader.calls(), 2, "the third read was a hit");
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_for_explicit_calls_and_a_fallback_for_reads() {
    let server = RedisServer::start_with_password("right-password");
    let wrong_url = format!("redis://:wrong-password@127.0.0.1:{}", server.port());
    let cache = Cache::new(
        config(&server)
            .redis_url(wrong_url)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let key = cache.entity("product").expect("entity").key(&1u8);

    let err = cache.get::<String>(&key).await.expect_err("auth fails");
    assert!(matches!(err, CacheError::Authentication(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("Redis rejected the credentials"),
        "{err}"
    );
    assert!(!err.to_string().contains("wrong-password"), "{err}");

    let loader = CountingLoader::default();
    read_through(&cache, &loader, 1).await;
    assert_eq!(loader.calls(), 1);
    assert_eq!(server.cached_keys("*"), Vec::<String>::new());
}

#[tokio::test]
async fn the_right_password_works() {
    let server = RedisServer::start_with_password("right-password");
    let cache = fragile_cache(&server);
    let loader = CountingLoader::default();
    read_through(&cache, &loader, 1).await;
    read_through(&cache, &loader, 1).await;
    assert_eq!(loader.calls(), 1);
}

#[tokio::test]
async fn command_errors_fall_back_without_tripping_the_breaker() {
    let server = RedisServer::start();
    let cache = fragile_cache(&server);
    let key = cache.entity("product").expect("entity").key(&1u32);
    // A list where a string is expected: every GET answers WRONGTYPE.
    let _: i64 = server.query(redis::cmd("LPUSH").arg(key.as_str()).arg("x"));

    let loader = CountingLoader::default();
    for _ in 0..10 {
        read_through(&cache, &loader, 1).await;
    }
    assert_eq!(loader.calls(), 10);
    let err = cache.get::<String>(&key).await.expect_err("WRONGTYPE");
    assert!(!err.is_connection_class(), "{err}");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    assert_eq!(cache.breaker_transitions(), 0);
}

#[test]
fn a_cache_outlives_the_runtime_that_built_it() {
    let server = RedisServer::start();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache = first.block_on(async {
        let cache = crate::cache(&server);
        let key = cache.entity("product").expect("entity").key(&1u32);
        cache.set(&key, "v1", Ttl::Medium).await.expect("set");
        cache
    });
    drop(first);

    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    second.block_on(async {
        let key = cache.entity("product").expect("entity").key(&1u32);
        // Every call ends (the deadline sweeper runs again), whatever the connections made on
        // the dead runtime do, and the cache recovers on this one.
        let started = Instant::now();
        loop {
            let read = tokio::time::timeout(
                Duration::from_secs(3),
                cache.get_or_set(&key, Ttl::Medium, || async {
                    Ok::<_, String>("source".to_owned())
                }),
            )
            .await
            .expect("a call hung on the dead runtime's tasks");
            if read.as_deref() == Ok("v1") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never recovered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let started = Instant::now();
        while !cache.invalidation_bus_connected() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "never resubscribed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[tokio::test]
async fn after_a_restart_the_first_probe_succeeds_twenty_times_in_a_row() {
    let mut server = RedisServer::start();
    let cache = Cache::new(
        config(&server)
            .operation_timeout(Duration::from_millis(100))
            .breaker_threshold(2)
            .breaker_cooldown(Duration::from_millis(300))
            .build()
            .expect("config"),
    )
    .expect("cache");
    let key = cache.entity("product").expect("entity").key(&1u32);
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        cache.set(&key, &round, Ttl::Medium).await.expect("set");
        server.stop();
        while cache.breaker_state() != BreakerState::Open {
            let _ = cache.get::<u32>(&key).await;
        }
        server.restart();
        let restarted = Instant::now();
        let before = cache.breaker_transitions();
        while cache.breaker_state() != BreakerState::Closed {
            assert!(
                restarted.elapsed() < Duration::from_secs(5),
                "round {round}"
            );
            let _ = cache.get::<u32>(&key).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        slowest = slowest.max(restarted.elapsed());
        assert_eq!(
            cache.breaker_transitions() - before,
            2,
            "round {round}: half-open then closed; a probe on a dead connection reopens it"
        );
    }
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");
}

#[tokio::test]
async fn the_first_calls_after_a_restart_succeed_on_fresh_connections() {
    let mut server = RedisServer::start();
    let cache = crate::cache(&server);
    let key = cache.entity("product").expect("entity").key(&1u32);
    // Both pooled connections are open to the server that is about to die.
    for _ in 0..4 {
        cache.set(&key, &1u32, Ttl::Medium).await.expect("set");
    }
    server.restart();
    for call in 0..4 {
        let result = cache.set(&key, &2u32, Ttl::Medium).await;
        assert!(result.is_ok(), "call {call} after the restart: {result:?}");
    }
    assert_eq!(cache.breaker_transitions(), 0);
}
