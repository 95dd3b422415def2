use std::time::{Duration, Instant};

use cache_runtime::{Cache, ReadOptions, Ttl};

use crate::RedisServer;
use crate::config;
use cache_tests::Proxy;

const LOCAL: ReadOptions = ReadOptions::new(Ttl::Medium).local();

fn instance(server: &RedisServer) -> Cache {
    Cache::new(config(server).build().expect("config")).expect("cache")
}

/// Waits until `condition` holds, for at most two seconds.
async fn eventually(what: &str, condition: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

async fn read(cache: &Cache, id: u32, value: &str) -> String {
    let key = cache.entity("product").expect("entity").key(&id);
    let value = value.to_owned();
    cache
        .get_or_set_with(&key, LOCAL, || async { Ok::<_, String>(value) })
        .await
        .expect("value")
}

#[tokio::test]
async fn a_local_hit_needs_no_redis_round_trip() {
    let server = RedisServer::start();
    let cache = instance(&server);
    eventually("subscribed", || cache.invalidation_bus_connected()).await;
    assert_eq!(read(&cache, 1, "v1").await, "v1");
    let gets = server.command_calls("get");
    for _ in 0..10 {
        assert_eq!(read(&cache, 1, "ignored").await, "v1");
    }
    assert_eq!(server.command_calls("get"), gets, "no GET reached Redis");
    let metrics = cache.entity("product").expect("entity").metrics();
    assert_eq!((metrics.local_hits, metrics.loader_calls), (10, 1));
    // Local hits are hits, counted once: the Redis tier's series adds none of them.
    assert_eq!((metrics.hits, metrics.redis_hits()), (10, 0));
}

#[tokio::test]
async fn a_healthy_subscription_survives_its_heartbeats() {
    let server = RedisServer::start();
    let cache = instance(&server);
    eventually("subscribed", || cache.invalidation_bus_connected()).await;
    assert_eq!(read(&cache, 1, "v1").await, "v1");
    // Three heartbeats (one a second), each a `PING` on the subscribed connection.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert!(server.command_calls("ping") >= 3, "the heartbeats ran");
    assert_eq!(
        server.command_calls("subscribe"),
        2,
        "answered heartbeats keep the one subscription (the app's and the echo channel, then \
         the entity's key events at its first local read)"
    );
    assert_eq!(
        cache.local_tier_len(),
        1,
        "the local tier was never flushed"
    );
    assert_eq!(read(&cache, 1, "unused").await, "v1");
}

/// Each instance's heartbeat echo (`<origin> h -`) goes to a channel of its own: the app's
/// channel carries none (four instances would otherwise each receive four echoes a second, N² at fleet size),
/// every echo channel has one subscriber, its sender, and carries that sender's echoes only.
#[tokio::test]
async fn each_echo_reaches_only_its_sender() {
    use futures_util::StreamExt as _;

    let server = RedisServer::start();
    let caches: Vec<Cache> = (0..4).map(|_| instance(&server)).collect();
    crate::subscribed(&caches.iter().collect::<Vec<_>>()).await;
    let client = redis::Client::open(server.url()).expect("client");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe("test:%invalidations")
        .await
        .expect("subscribe");
    pubsub.psubscribe("test:%echo:*").await.expect("psubscribe");
    let mut messages = pubsub.on_message();
    let mut on_app_channel = 0usize;
    let mut echo_channels = std::collections::BTreeSet::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(2_500);
    while let Ok(Some(message)) = tokio::time::timeout_at(until, messages.next()).await {
        let channel = message.get_channel_name().to_owned();
        let payload: String = message.get_payload().expect("payload");
        match channel.strip_prefix("test:%echo:") {
            Some(origin) => {
                assert!(
                    payload.starts_with(origin),
                    "{payload:?} on the echo channel of {origin}"
                );
                echo_channels.insert(channel);
            }
            // Marks an instance publishes when it first meets Redis may pass here; echoes not.
            None => on_app_channel += usize::from(payload.ends_with(" h -")),
        }
    }
    assert_eq!(on_app_channel, 0, "no echo on the app's channel");
    assert_eq!(echo_channels.len(), 4, "one echo channel per instance");
    for channel in &echo_channels {
        let (_, subscribers): (String, u64) =
            server.query(redis::cmd("PUBSUB").arg("NUMSUB").arg(channel));
        assert_eq!(subscribers, 1, "{channel}: its sender only");
    }
}

#[tokio::test]
async fn a_write_in_one_instance_evicts_the_local_copy_in_another() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server), instance(&server));
    eventually("both subscribed", || {
        a.invalidation_bus_connected() && b.invalidation_bus_connected()
    })
    .await;
    assert_eq!(read(&a, 1, "v1").await, "v1");
    assert_eq!(read(&a, 2, "other").await, "other");
    assert_eq!(a.local_tier_len(), 2);

    let key = b.entity("product").expect("entity").key(&1u32);
    b.set(&key, "v2", Ttl::Medium).await.expect("write");
    let delay = eventually("evicted in a", || a.local_tier_len() == 1).await;
    assert_eq!(read(&a, 1, "unused").await, "v2", "after {delay:?}");

    b.invalidate_id(&b.entity("product").expect("entity"), &2u32)
        .await
        .expect("invalidate");
    eventually("id evicted in a", || a.local_tier_len() == 1).await;
    assert_eq!(read(&a, 2, "reloaded").await, "reloaded");
}

#[tokio::test]
async fn entity_wide_invalidation_reaches_other_instances_and_spares_other_entities() {
    let server = RedisServer::start();
    let (a, b) = (instance(&server), instance(&server));
    eventually("both subscribed", || {
        a.invalidation_bus_connected() && b.invalidation_bus_connected()
    })
    .await;
    read(&a, 1, "v1").await;
    let other = a.entity("category").expect("entity").key(&1u32);
    a.get_or_set_with(&other, LOCAL, || async { Ok::<_, String>("c".to_owned()) })
        .await
        .expect("value");
    assert_eq!(a.local_tier_len(), 2);
    b.invalidate_entity(&b.entity("product").expect("entity"))
        .await
        .expect("invalidate");
    let started = Instant::now();
    while read(&a, 1, "v2").await != "v2" {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a kept serving the invalidated product"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let metrics_before = a.entity("category").expect("entity").metrics().local_hits;
    a.get_or_set_with(&other, LOCAL, || async { Ok::<_, String>("x".to_owned()) })
        .await
        .expect("value");
    assert_eq!(
        a.entity("category").expect("entity").metrics().local_hits,
        metrics_before + 1
    );
}

#[tokio::test]
async fn a_killed_subscriber_flushes_the_local_tier_and_resubscribes() {
    let server = RedisServer::start();
    let cache = instance(&server);
    eventually("subscribed", || cache.invalidation_bus_connected()).await;
    read(&cache, 1, "v1").await;
    assert_eq!(cache.local_tier_len(), 1);

    let killed: i64 = server.query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"));
    assert_eq!(killed, 1);
    eventually("flushed", || cache.local_tier_len() == 0).await;
    eventually("resubscribed", || cache.invalidation_bus_connected()).await;
    let subscribers: Vec<(String, i64)> = server.query(
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("test:%invalidations"),
    );
    assert_eq!(subscribers[0].1, 1);
    read(&cache, 1, "unused").await; // a Redis hit, stored locally again
    assert_eq!(cache.local_tier_len(), 1);
}

#[tokio::test]
async fn with_the_tier_off_nothing_is_kept_locally() {
    let server = RedisServer::start();
    let cache = Cache::new(
        config(&server)
            .local_tier_bytes(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    read(&cache, 1, "v1").await;
    read(&cache, 1, "v1").await;
    assert_eq!(cache.local_tier_len(), 0);
    assert!(!cache.invalidation_bus_connected());
    assert_eq!(
        cache
            .entity("product")
            .expect("entity")
            .metrics()
            .local_hits,
        0
    );
}

#[tokio::test]
async fn invalidations_reach_the_local_tier_of_another_process() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let server = RedisServer::start();
    let mut listener = Command::new(env!("CARGO_BIN_EXE_bus_listener"))
        .args([server.url(), "20".to_owned()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bus_listener");
    let mut lines = BufReader::new(listener.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));

    // The other process holds 20 products locally; it exits once all are evicted.
    let cache = Cache::new(
        crate::config(&server)
            .app_prefix("bus")
            .local_tier_bytes(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let products = cache.entity("product").expect("entity");
    for id in 0..10u32 {
        cache.delete(&products.key(&id)).await.expect("delete");
    }
    cache
        .invalidate_matching(&products, "1*")
        .await
        .expect("pattern"); // 10..19 (and 1): the listener drops the whole entity
    let evictions = lines.map_while(Result::ok).count();
    let status = listener.wait().expect("wait");
    assert!(status.success());
    assert_eq!(
        evictions, 20,
        "every local entry of the other process was evicted"
    );
}

#[cache_runtime::cached(entity = "price", key = "{id}", local)]
async fn price(id: u32, value: &str) -> String {
    let _ = id;
    value.to_owned()
}

#[tokio::test]
async fn a_forced_refresh_evicts_other_instances_local_copies() {
    use cache_runtime::{refreshing, with_cache};

    let server = RedisServer::start();
    let (a, b) = (instance(&server), instance(&server));
    eventually("both subscribed", || {
        a.invalidation_bus_connected() && b.invalidation_bus_connected()
    })
    .await;
    assert_eq!(with_cache(a.clone(), price(1, "v1")).await, "v1");
    assert_eq!(a.local_tier_len(), 1);
    assert_eq!(
        with_cache(b.clone(), refreshing(price(1, "v2"))).await,
        "v2"
    );
    eventually("evicted in a", || a.local_tier_len() == 0).await;
    assert_eq!(with_cache(a.clone(), price(1, "unused")).await, "v2");
}

#[tokio::test]
async fn the_subscriber_survives_a_redis_restart() {
    let mut server = RedisServer::start();
    let cache = instance(&server);
    eventually("subscribed", || cache.invalidation_bus_connected()).await;
    read(&cache, 1, "v1").await;
    server.stop();
    eventually("disconnected, tier off", || {
        !cache.invalidation_bus_connected() && cache.local_tier_len() == 0
    })
    .await;
    server.restart();
    eventually("resubscribed after the restart", || {
        cache.invalidation_bus_connected()
    })
    .await;
}

#[tokio::test]
async fn a_subscriber_whose_network_goes_silent_turns_the_local_tier_off() {
    let server = RedisServer::start();
    let proxy = Proxy::start(server.port());
    let through_proxy = format!("redis://127.0.0.1:{}", proxy.port());
    let a = Cache::new(
        config(&server)
            .redis_url(through_proxy)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let b = instance(&server);
    eventually("both subscribed", || {
        a.invalidation_bus_connected() && b.invalidation_bus_connected()
    })
    .await;
    assert_eq!(read(&a, 1, "v1").await, "v1");
    assert_eq!(read(&a, 1, "unused").await, "v1", "a local hit");

    // The network between a and Redis drops everything; no socket is closed.
    proxy.blackhole();
    let key = b.entity("product").expect("entity").key(&1u32);
    b.set(&key, "v2", Ttl::Medium).await.expect("set");
    // The heartbeat notices within its bound (1 s + 0.5 s with the defaults).
    let noticed = eventually("a noticed its dead subscription", || {
        !a.invalidation_bus_connected()
    })
    .await;
    assert!(noticed < Duration::from_secs(2), "{noticed:?}");
    assert_eq!(a.local_tier_len(), 0, "the local tier was flushed");
    assert_eq!(
        read(&a, 1, "from the source").await,
        "from the source",
        "the old value is gone; Redis is out of reach, so the source answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_far_behind_the_bus_turns_the_local_tier_off_until_it_catches_up() {
    // No output-buffer limit: the subscriber falls behind instead of being disconnected.
    let server = RedisServer::start_with_args(&["--client-output-buffer-limit", "pubsub 0 0 0"]);
    let cache = instance(&server);
    eventually("subscribed", || cache.invalidation_bus_connected()).await;
    // Let one echo go round while the bus is quiet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(cache.invalidation_bus_connected());

    // Another instance's events, far more than the subscriber applies in a second.
    let flood = {
        let mut connection = server.connection().expect("connect");
        std::thread::spawn(move || {
            for chunk in 0..100 {
                let mut pipe = redis::pipe();
                for i in 0..10_000 {
                    pipe.cmd("PUBLISH")
                        .arg("test:%invalidations")
                        .arg(format!("0000000000000001 k test:v1:flood:{chunk}-{i}"))
                        .ignore();
                }
                let () = pipe.query(&mut connection).expect("publish");
            }
        })
    };
    let started = Instant::now();
    while cache.invalidation_bus_connected() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the subscriber never noticed it was behind"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        cache.local_tier_len(),
        0,
        "nothing is served from the local tier meanwhile"
    );
    flood.join().expect("flood");
    let started = Instant::now();
    while !cache.invalidation_bus_connected() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A write is announced on its entity's own channel, to which only instances that keep that
/// entity in their local tier subscribe (at their first local read of it): an instance that
/// reads the entity from Redis only receives nothing, and the app's channel carries no write.
#[tokio::test]
async fn a_write_is_announced_only_to_instances_that_keep_the_entity_locally() {
    use futures_util::StreamExt as _;

    let server = RedisServer::start();
    let (writer, holder, remote) = (instance(&server), instance(&server), instance(&server));
    crate::subscribed(&[&writer, &holder, &remote]).await;
    let channel = "test:v1:product:%keys";
    let subscribers = || -> u64 {
        let (_, count): (String, u64) =
            server.query(redis::cmd("PUBSUB").arg("NUMSUB").arg(channel));
        count
    };
    assert_eq!(subscribers(), 0, "no instance keeps products locally yet");

    assert_eq!(read(&holder, 1, "v1").await, "v1");
    assert_eq!(subscribers(), 1, "the first local read subscribed");
    assert_eq!(holder.local_tier_len(), 1, "and kept the value");
    let key = remote.entity("product").expect("entity").key(&1u32);
    assert_eq!(
        remote.get::<String>(&key).await.expect("get").as_deref(),
        Some("v1")
    );
    assert_eq!(subscribers(), 1, "a Redis read subscribes to nothing");

    let client = redis::Client::open(server.url()).expect("client");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe("test:%invalidations")
        .await
        .expect("subscribe");
    let mut app_channel = pubsub.into_on_message();
    writer
        .set(&key, &"v2".to_owned(), Ttl::Medium)
        .await
        .expect("write");
    eventually("the holder dropped its copy", || {
        holder.local_tier_len() == 0
    })
    .await;
    assert_eq!(read(&holder, 1, "unused").await, "v2");
    let on_app_channel = tokio::time::timeout(Duration::from_millis(200), app_channel.next()).await;
    assert!(
        on_app_channel.is_err(),
        "the write was not announced to the whole app"
    );
}
