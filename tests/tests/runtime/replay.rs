use std::time::{Duration, Instant};

use cache_runtime::{Cache, Ttl, invalidates, with_cache};

use crate::RedisServer;
use crate::config;

fn resilient(server: &RedisServer, capacity: usize) -> Cache {
    Cache::new(
        config(server)
            .operation_timeout(Duration::from_millis(100))
            .breaker_threshold(2)
            .breaker_cooldown(Duration::from_millis(1000))
            .replay_capacity(capacity)
            .build()
            .expect("config"),
    )
    .expect("cache")
}

/// Pauses Redis for `pause` and opens `cache`'s breaker with two timed-out reads, so that what
/// follows is never sent (a timed-out command would still run when the pause ends).
async fn cut_off(server: &RedisServer, cache: &Cache, pause: Duration) -> Instant {
    let paused_at = Instant::now();
    server.pause(pause);
    let probe = cache.entity("probe").expect("entity").key(&0u8);
    while cache.breaker_state() != cache_runtime::BreakerState::Open {
        let _ = cache.get::<u8>(&probe).await;
    }
    paused_at
}

async fn until_replayed(cache: &Cache) -> Duration {
    let started = Instant::now();
    while cache.pending_invalidations() > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "never replayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[invalidates(entity = "product", key = "{id}")]
async fn rename(id: u32) -> Result<(), String> {
    let _ = id;
    Ok(())
}

#[tokio::test]
async fn an_invalidation_that_cannot_reach_redis_is_replayed_and_the_write_still_succeeds() {
    let server = RedisServer::start();
    let cache = resilient(&server, 100);
    let products = cache.entity("product").expect("entity");
    cache
        .set(&products.key(&1u32), "old", Ttl::Medium)
        .await
        .expect("warm");

    let paused_at = cut_off(&server, &cache, Duration::from_millis(600)).await;
    let started = Instant::now();
    let result = with_cache(cache.clone(), rename(1)).await;
    assert_eq!(result, Ok(()), "the write's own result is untouched");
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cache.pending_invalidations(), 1, "kept, not sent");
    let _ = paused_at;

    until_replayed(&cache).await;
    let gone: Option<Vec<u8>> = server.query(redis::cmd("GET").arg("test:v1:product:1"));
    assert_eq!(gone, None);
    let read = cache
        .get_or_set(&products.key(&1u32), Ttl::Medium, || async {
            Ok::<_, String>("new".to_owned())
        })
        .await;
    assert_eq!(read.as_deref(), Ok("new"), "nobody reads the old value");
}

#[tokio::test]
async fn past_the_bound_the_whole_entity_is_invalidated_on_recovery() {
    let server = RedisServer::start();
    let cache = resilient(&server, 2);
    let products = cache.entity("product").expect("entity");
    let categories = cache.entity("category").expect("entity");
    for id in 0..10u32 {
        cache
            .set(&products.key(&id), "old", Ttl::Medium)
            .await
            .expect("warm");
    }
    cache
        .set(&categories.key(&1u32), "kept", Ttl::Medium)
        .await
        .expect("warm");

    cut_off(&server, &cache, Duration::from_millis(600)).await;
    for id in 0..5u32 {
        assert!(cache.invalidate_id(&products, &id).await.is_err());
    }
    assert_eq!(
        cache.pending_invalidations(),
        3,
        "2 kept one by one + 1 entity"
    );

    until_replayed(&cache).await;
    for id in 0..10u32 {
        let value: Option<String> = cache.get(&products.key(&id)).await.expect("get");
        assert_eq!(value, None, "product {id} was invalidated with its entity");
    }
    let kept: Option<String> = cache.get(&categories.key(&1u32)).await.expect("get");
    assert_eq!(kept.as_deref(), Some("kept"));
}

#[tokio::test]
async fn an_event_that_could_not_be_published_reaches_other_instances_later() {
    let server = RedisServer::start();
    let (a, b) = (resilient(&server, 100), resilient(&server, 100));
    crate::subscribed(&[&a, &b]).await;
    let options = cache_runtime::ReadOptions::new(Ttl::Medium).local();
    let key_a = a.entity("product").expect("entity").key(&1u32);
    let read = a
        .get_or_set_with(&key_a, options, || async {
            Ok::<_, String>("old".to_owned())
        })
        .await;
    assert_eq!(read.as_deref(), Ok("old"));
    assert_eq!(a.local_tier_len(), 1);

    let paused_at = cut_off(&server, &b, Duration::from_millis(600)).await;
    let key_b = b.entity("product").expect("entity").key(&1u32);
    assert!(b.delete(&key_b).await.is_err());
    tokio::time::sleep(Duration::from_millis(650).saturating_sub(paused_at.elapsed())).await;
    assert_eq!(
        a.local_tier_len(),
        1,
        "no event reached a before the replay"
    );
    until_replayed(&b).await;
    let started = Instant::now();
    while a.local_tier_len() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a kept its local copy"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_write_that_cannot_reach_redis_invalidates_the_key_when_redis_is_back() {
    let server = RedisServer::start();
    let (a, b) = (resilient(&server, 100), resilient(&server, 100));
    let key_a = a.entity("product").expect("entity").key(&1u32);
    let key_b = b.entity("product").expect("entity").key(&1u32);
    a.set(&key_a, &100u32, Ttl::Medium).await.expect("set");
    assert_eq!(b.get::<u32>(&key_b).await.expect("get"), Some(100));

    cut_off(&server, &a, Duration::from_millis(600)).await;
    assert!(a.set(&key_a, &200u32, Ttl::Medium).await.is_err());
    assert_eq!(a.pending_invalidations(), 1, "the failed write is kept");
    until_replayed(&a).await;
    assert_eq!(
        b.get::<u32>(&key_b).await.expect("get"),
        None,
        "the old value does not outlive the write"
    );
}

#[tokio::test]
async fn a_write_too_large_to_store_still_drops_the_older_value() {
    let server = RedisServer::start();
    let cache = Cache::new(
        config(&server)
            .max_value_bytes(256)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let key = cache.entity("page").expect("entity").key(&1u32);
    cache.set(&key, "small", Ttl::Medium).await.expect("set");
    let big = "x".repeat(1_000);
    let error = cache
        .set(&key, &big, Ttl::Medium)
        .await
        .expect_err("too large");
    assert!(
        matches!(error, cache_runtime::CacheError::TooLarge { .. }),
        "{error}"
    );
    assert_eq!(cache.get::<String>(&key).await.expect("get"), None);
}

#[tokio::test]
async fn an_invalidation_redis_refuses_does_not_block_the_ones_after_it() {
    let server = RedisServer::start();
    let cache = resilient(&server, 100);
    let products = cache.entity("product").expect("entity");
    let locked = cache.entity("locked").expect("entity");
    for id in 0..3u32 {
        cache
            .set(&products.key(&id), &id, Ttl::Medium)
            .await
            .expect("set");
    }
    cut_off(&server, &cache, Duration::from_millis(600)).await;
    assert!(cache.delete(&locked.key(&1u32)).await.is_err());
    for id in 0..3u32 {
        assert!(cache.delete(&products.key(&id)).await.is_err());
    }
    assert_eq!(cache.pending_invalidations(), 4);
    // From now on Redis refuses every command on `locked` keys (NOPERM), not the others.
    let _: () = server.query(
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("resetkeys")
            .arg("~test:v1:product:*")
            .arg("~{test:v1:product:*")
            .arg("~test:%*"),
    );
    until_replayed(&cache).await;
    for id in 0..3u32 {
        let value: Option<u32> = cache.get(&products.key(&id)).await.expect("get");
        assert_eq!(value, None, "product {id} was replayed");
    }
}

#[tokio::test]
async fn a_shutdown_flush_sends_what_is_pending_or_says_what_is_left() {
    let server = RedisServer::start();
    let cache = resilient(&server, 100);
    let products = cache.entity("product").expect("entity");
    cache
        .set(&products.key(&1u32), "old", Ttl::Medium)
        .await
        .expect("set");
    cut_off(&server, &cache, Duration::from_millis(600)).await;
    assert!(cache.invalidate_id(&products, &1u32).await.is_err());
    assert_eq!(
        cache.flush_pending(Duration::from_millis(50)).await,
        1,
        "Redis is still out of reach: one is left"
    );
    assert_eq!(cache.flush_pending(Duration::from_secs(5)).await, 0);
    assert_eq!(cache.pending_invalidations(), 0);
    let gone: Option<Vec<u8>> = server.query(redis::cmd("GET").arg("test:v1:product:1"));
    assert_eq!(gone, None, "it reached Redis before the flush returned");
}

#[tokio::test]
async fn past_a_thousand_distinct_overflows_the_whole_app_is_invalidated_on_recovery() {
    let server = RedisServer::start();
    let cache = resilient(&server, 2);
    let products = cache.entity("product").expect("entity");
    let pinned = cache.entity_at_version("brand", 9).expect("entity");
    cache
        .set(&products.key(&1u32), &1u32, Ttl::Medium)
        .await
        .expect("set");
    cache
        .set(&pinned.key(&1u32), &1u32, Ttl::Medium)
        .await
        .expect("set");

    cut_off(&server, &cache, Duration::from_millis(600)).await;
    for tag in 0..1_500u32 {
        assert!(cache.invalidate_tag(&format!("group:{tag}")).await.is_err());
    }
    assert_eq!(
        cache.pending_invalidations(),
        3,
        "2 kept one by one, then the whole app stands for the rest: memory stays bounded"
    );
    until_replayed(&cache).await;
    let product: Option<u32> = cache.get(&products.key(&1u32)).await.expect("get");
    let brand: Option<u32> = cache.get(&pinned.key(&1u32)).await.expect("get");
    assert_eq!((product, brand), (None, None), "every entity and version");
}

#[tokio::test]
async fn invalidate_all_reaches_every_entity_version_and_instance() {
    let server = RedisServer::start();
    let (a, b) = (resilient(&server, 10), resilient(&server, 10));
    crate::subscribed(&[&a, &b]).await;
    let products = b.entity("product").expect("entity");
    let pinned = b.entity_at_version("brand", 9).expect("entity");
    b.set(&products.key(&1u32), &1u32, Ttl::Medium)
        .await
        .expect("set");
    b.set(&pinned.key(&1u32), &1u32, Ttl::Medium)
        .await
        .expect("set");
    assert_eq!(
        b.get::<u32>(&products.key(&1u32)).await.expect("get"),
        Some(1)
    );

    a.invalidate_all().await.expect("invalidate");
    let started = Instant::now();
    loop {
        let product: Option<u32> = b.get(&products.key(&1u32)).await.expect("get");
        let brand: Option<u32> = b.get(&pinned.key(&1u32)).await.expect("get");
        if (product, brand) == (None, None) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "b kept serving");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_replay_lands_when_redis_answers_not_when_the_breaker_cooldown_ends() {
    let server = RedisServer::start();
    let cache = Cache::new(
        config(&server)
            .operation_timeout(Duration::from_millis(100))
            .breaker_threshold(2)
            // Far longer than `until_replayed` waits: only an early probe can replay in time.
            .breaker_cooldown(Duration::from_secs(30))
            .build()
            .expect("config"),
    )
    .expect("cache");
    let products = cache.entity("product").expect("entity");
    let key = products.key(&1u32);
    cache.set(&key, "old", Ttl::Medium).await.expect("warm");
    cut_off(&server, &cache, Duration::from_millis(300)).await;
    assert!(cache.invalidate_id(&products, &1u32).await.is_err());
    let waited = until_replayed(&cache).await;
    let gone: Option<Vec<u8>> = server.query(redis::cmd("GET").arg("test:v1:product:1"));
    assert_eq!(gone, None, "replayed after {waited:?}");
    let read = cache
        .get_or_set(&key, Ttl::Medium, || async {
            Ok::<_, String>("new".to_owned())
        })
        .await;
    assert_eq!(read.as_deref(), Ok("new"));
}

#[tokio::test]
async fn an_invalidation_refused_while_a_script_runs_is_replayed_afterwards() {
    // Past 100 ms a running script makes Redis answer every other command with BUSY.
    let server = RedisServer::start_with_args(&["--busy-reply-threshold", "100"]);
    let writer = crate::cache(&server);
    let reader = crate::cache(&server);
    crate::subscribed(&[&writer, &reader]).await;
    let products = reader.entity("product").expect("entity");
    let key = products.key(&1u32);
    writer.set(&key, "old", Ttl::Medium).await.expect("set");
    assert_eq!(
        reader.get::<String>(&key).await.expect("get").as_deref(),
        Some("old")
    );

    let mut busy = server.connection().expect("connect");
    let script = std::thread::spawn(move || {
        let _: redis::RedisResult<()> = redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query(&mut busy);
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writer_products = writer.entity("product").expect("entity");
    let refused = writer.invalidate_entity(&writer_products).await;
    let error = refused.expect_err("Redis answers BUSY while the script runs");
    assert!(error.to_string().contains("BUSY"), "{error}");
    assert_eq!(writer.pending_invalidations(), 1, "kept for replay");
    // Replays while the script still runs are refused the same way, and keep it.
    assert_eq!(
        writer.flush_pending(Duration::from_millis(300)).await,
        1,
        "a BUSY refusal is not dropped"
    );

    let _: () = server.query(redis::cmd("SCRIPT").arg("KILL"));
    script.join().expect("script thread");
    assert_eq!(
        writer.flush_pending(Duration::from_secs(5)).await,
        0,
        "replayed"
    );
    assert_eq!(
        reader.get::<String>(&key).await.expect("get"),
        None,
        "another instance no longer serves the old value"
    );
}
