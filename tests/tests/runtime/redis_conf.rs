//! The recommended `redis.conf`, as shipped: the application user can run the framework and
//! nothing dangerous; the operator user can inspect and nothing else.

use std::path::PathBuf;

use cache_runtime::{Cache, CacheConfig, Ttl};
use cache_tests::RedisServer;

/// `redis.conf` with passwords for its two users, written where the server can read it.
fn config_with_passwords() -> PathBuf {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../redis.conf"))
        .expect("redis.conf");
    let with_passwords = shipped
        .replace(
            "user cacheapp on resetpass",
            "user cacheapp on resetpass >app-secret",
        )
        .replace(
            "user cacheops on resetpass",
            "user cacheops on resetpass >ops-secret",
        );
    assert_ne!(shipped, with_passwords, "both users are declared");
    let path = std::env::temp_dir().join(format!("cache-tests-redis-{}.conf", std::process::id()));
    std::fs::write(&path, with_passwords).expect("write the config");
    path
}

/// Whether `user` may run `cmd` (false on NOPERM, panics on anything else).
fn allowed(server: &RedisServer, user: &str, password: &str, cmd: &redis::Cmd) -> bool {
    let url = format!("redis://{user}:{password}@127.0.0.1:{}", server.port());
    let mut connection = redis::Client::open(url)
        .expect("client")
        .get_connection()
        .expect("connect");
    match cmd.query::<redis::Value>(&mut connection) {
        Ok(_) => true,
        Err(error) if error.code() == Some("NOPERM") => false,
        // Past the ACL check: a plain Redis refuses cluster commands itself.
        Err(error) if error.to_string().contains("cluster support disabled") => true,
        Err(error) => panic!("{user}: unexpected error: {error}"),
    }
}

#[tokio::test]
async fn the_app_user_runs_the_framework_and_the_ops_user_only_inspects() {
    let config = config_with_passwords();
    let server = RedisServer::start_with_config(&config, "cacheapp", "app-secret");
    let cache = Cache::new(
        CacheConfig::builder()
            .redis_url(server.url())
            .app_prefix("shop")
            .metrics_log_interval(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let products = cache.entity("product").expect("entity");
    let started = std::time::Instant::now();
    while !cache.invalidation_bus_connected() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "subscribe"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    cache
        .set(&products.key(&1u32), &1u32, Ttl::Medium)
        .await
        .expect("set");
    cache
        .set(&products.variant_key(&1u32, "p1"), &1u32, Ttl::Medium)
        .await
        .expect("set");
    let loaded = cache
        .get_or_set(&products.key(&2u32), Ttl::Medium, || async {
            Ok::<_, String>(2u32)
        })
        .await;
    assert_eq!(loaded, Ok(2));
    assert_eq!(
        cache.get::<u32>(&products.key(&2u32)).await.expect("get"),
        Some(2)
    );
    // A batch read (one `MGET`); an error here would be the user's refusal.
    let keys = [1u32, 2, 3].map(|id| products.key(&id));
    assert_eq!(
        cache.get_many::<u32>(&keys).await.expect("get_many"),
        [Some(1), Some(2), None]
    );
    cache
        .invalidate_id(&products, &1u32)
        .await
        .expect("invalidate id");
    cache
        .invalidate_entity(&products)
        .await
        .expect("invalidate entity");
    cache
        .invalidate_tag("group:1")
        .await
        .expect("invalidate tag");
    cache.invalidate_all().await.expect("invalidate all");
    assert_eq!(
        cache.get::<u32>(&products.key(&2u32)).await.expect("get"),
        None
    );

    let app = |cmd: &redis::Cmd| allowed(&server, "cacheapp", "app-secret", cmd);
    // The runtime sends its scripts by digest, loading them when the server lacks them.
    assert!(app(redis::cmd("SCRIPT").arg("LOAD").arg("return 1")));
    assert!(app(redis::cmd("EVALSHA")
        .arg("e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
        .arg(0)));
    assert!(!app(redis::cmd("SCRIPT").arg("FLUSH")));
    // On a cluster: the slot table, `ASK` redirections and waiting for replicas.
    assert!(app(redis::cmd("CLUSTER").arg("SLOTS")));
    assert!(app(redis::cmd("CLUSTER").arg("SHARDS")));
    assert!(app(redis::cmd("WAIT").arg(0).arg(0)));
    assert!(app(&redis::cmd("ASKING")));
    assert!(!app(redis::cmd("CLUSTER").arg("FAILOVER")));
    assert!(!app(&redis::cmd("FLUSHALL")));
    assert!(!app(redis::cmd("KEYS").arg("*")));
    assert!(!app(redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1mb")));
    assert!(
        !app(redis::cmd("SET").arg("other:x").arg(1)),
        "other apps' keys"
    );

    let ops = |cmd: &redis::Cmd| allowed(&server, "cacheops", "ops-secret", cmd);
    for cmd in [
        redis::cmd("INFO"),
        redis::cmd("SLOWLOG").arg("LEN").clone(),
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .clone(),
        redis::cmd("SCAN").arg(0).arg("COUNT").arg(10).clone(),
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg("{shop:%mark}:%epoch")
            .clone(),
        redis::cmd("PTTL").arg("{shop:%mark}:%epoch").clone(),
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("shop:%invalidations")
            .clone(),
        redis::cmd("CLIENT").arg("LIST").clone(),
        redis::cmd("DBSIZE"),
        redis::cmd("LATENCY").arg("LATEST").clone(),
    ] {
        assert!(ops(&cmd), "ops may run {cmd:?}");
    }
    for cmd in [
        redis::cmd("FLUSHALL"),
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("1mb")
            .clone(),
        redis::cmd("ACL").arg("SETUSER").arg("x").clone(),
        redis::cmd("SET").arg("shop:x").arg(1).clone(),
        redis::cmd("UNLINK").arg("{shop:%mark}:%epoch").clone(),
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .clone(),
        redis::cmd("EVAL").arg("return 1").arg(0).clone(),
        redis::cmd("SHUTDOWN"),
    ] {
        assert!(!ops(&cmd), "ops may not run {cmd:?}");
    }
    let _ = std::fs::remove_file(config);
}
