//! Lua scripts go to Redis by digest (`EVALSHA`), are loaded again when the server has lost
//! them, and are sent whole when the Redis user may not send them by digest.

use crate::RedisServer;
use cache_runtime::{BreakerState, Cache, Ttl};

use crate::CountingLoader;

/// A cache's scripts after a `SCRIPT FLUSH`: a miss (its populate), an ordered write, a key
/// invalidation and an entity invalidation (epoch, mark) all work, by digest, with one load
/// of the scripts.
#[tokio::test]
async fn scripts_go_by_digest_and_are_loaded_again_after_a_flush() {
    let server = RedisServer::start();
    let cache = crate::cache(&server);
    let products = cache.entity("product").expect("entity");
    let loader = CountingLoader::default();
    let first = cache
        .get_or_set(&products.key(&1u32), Ttl::Medium, || loader.load(1u32))
        .await;
    assert_eq!(first.expect("first read"), 1);
    assert!(server.command_calls("evalsha") >= 1, "the populate");

    let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
    let loads_before = server.command_calls("script|load");
    let second = cache
        .get_or_set(&products.key(&2u32), Ttl::Medium, || loader.load(2u32))
        .await;
    assert_eq!(second.expect("read after the flush"), 2);
    assert_eq!(
        cache.get::<u32>(&products.key(&2u32)).await.expect("get"),
        Some(2),
        "stored under its lease"
    );
    let stored = cache
        .set_ordered(&products.key(&3u32), &3u32, Ttl::Medium, 7)
        .await
        .expect("ordered write");
    assert!(stored);
    assert!(cache.delete(&products.key(&2u32)).await.expect("delete"));
    cache
        .invalidate_entity(&products)
        .await
        .expect("invalidate");
    assert_eq!(
        cache.get::<u32>(&products.key(&3u32)).await.expect("get"),
        None
    );

    assert_eq!(
        server.command_calls("script|load") - loads_before,
        9,
        "every script loaded once, after the first refusal"
    );
    assert_eq!(server.command_calls("eval"), 0, "no script sent whole");
    assert_eq!(loader.calls(), 2);
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
}

/// A user whose ACL allows `EVAL` only (a `redis.conf` from before scripts went by digest):
/// after the first refusal, scripts go whole and everything works.
#[tokio::test]
async fn a_user_that_may_not_send_scripts_by_digest_sends_them_whole() {
    let server = RedisServer::start();
    let _: () = server.query(
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("older")
            .arg("on")
            .arg(">secret")
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .arg("-evalsha")
            .arg("-script"),
    );
    let url = format!("redis://older:secret@127.0.0.1:{}", server.port());
    let cache = Cache::new(
        crate::config(&server)
            .redis_url(url)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let products = cache.entity("product").expect("entity");
    let loader = CountingLoader::default();
    for id in 0..3u32 {
        let value = cache
            .get_or_set(&products.key(&id), Ttl::Medium, || loader.load(id))
            .await;
        assert_eq!(
            value.expect("the loader answers even when a script is refused"),
            id
        );
    }
    assert_eq!(
        cache.get::<u32>(&products.key(&2u32)).await.expect("get"),
        Some(2),
        "stored under a lease taken by a script sent whole"
    );
    cache
        .invalidate_entity(&products)
        .await
        .expect("invalidate, its scripts sent whole");
    assert_eq!(
        cache.get::<u32>(&products.key(&2u32)).await.expect("get"),
        None
    );
    assert!(
        server.command_calls("eval") >= 4,
        "lease, populate, epoch, mark"
    );
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
}
