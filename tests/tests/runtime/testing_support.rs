//! `cache_runtime::testing`: scopes, caching off, recorded reads, stored values, test Redis.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::testing::{Outcome, Read, TestCache, TestRedis, Tier, record};
use cache_runtime::{CacheConfig, ReadOptions, Ttl, cache_put, cached, invalidates};

use crate::metrics_log::logged;

#[derive(Debug, Default)]
struct Repo {
    loads: AtomicUsize,
    /// The source is down: `price` fails.
    source_down: std::sync::atomic::AtomicBool,
}

impl Repo {
    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    #[cached(entity = "escaping", ttl = "medium", key = "{id}")]
    async fn escaping_product(&self, id: u64) -> Result<u64, std::io::Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }

    #[cached(entity = "unscoped", ttl = "medium", key = "{id}")]
    async fn unscoped_product(&self, id: u64) -> Result<u64, std::io::Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }

    #[cached(entity = "carried", ttl = "medium", key = "{id}")]
    async fn carried_product(&self, id: u64) -> Result<u64, std::io::Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }

    #[cached(entity = "product", ttl = "medium", key = "{id}")]
    async fn product(&self, id: u64) -> Result<String, std::io::Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(format!("product {id}"))
    }

    #[cache_put(entity = "product", ttl = "medium", key = "{id}")]
    async fn put_product(&self, id: u64) -> Result<String, std::io::Error> {
        Ok(format!("put {id}"))
    }

    #[invalidates(entity = "product", key = "{id}")]
    async fn rename(&self, id: u64) -> Result<(), std::io::Error> {
        let _ = id;
        Ok(())
    }

    #[cached(entity = "price", ttl = "short", key = "{id}", stale = "5m")]
    async fn price(&self, id: u64) -> Result<u64, std::io::Error> {
        if self.source_down.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("source down"));
        }
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(id * 100)
    }
}

#[test]
fn a_call_escaping_its_test_scope_is_warned_about_once_naming_the_function() {
    let (log, counts) = logged(tracing::Level::WARN, false, async {
        let test = TestCache::in_memory().expect("test cache");
        let repo = std::sync::Arc::new(Repo::default());
        test.run(async {
            for id in [1, 1] {
                let repo = repo.clone();
                let escaped = tokio::spawn(async move { repo.escaping_product(id).await });
                escaped.await.expect("task").expect("read");
            }
            for id in [2, 2] {
                let repo = repo.clone();
                let carried = cache_runtime::spawn(async move { repo.carried_product(id).await });
                carried.await.expect("task").expect("read");
            }
        })
        .await;
        let reads = |name: &str| {
            let metrics = test.cache().entity(name).expect("entity").metrics();
            (metrics.misses, metrics.hits)
        };
        (reads("escaping"), reads("carried"))
    });
    // The other tests of this binary may have installed a global cache: the escaped calls
    // went there, or to none.
    let warning = "`runtime::testing_support::escaping_product` ran outside its test's cache scope, so it used";
    assert_eq!(log.matches(warning).count(), 1, "one warning: {log}");
    assert!(!log.contains("carried_product"), "{log}");
    assert_eq!(
        counts,
        ((0, 0), (1, 1)),
        "escaped reads missed the test's cache"
    );
}

#[tokio::test]
async fn a_disabled_cache_runs_every_body_and_still_counts() {
    let test = TestCache::disabled().expect("test cache");
    let repo = Repo::default();
    test.run(async {
        for _ in 0..3 {
            assert_eq!(repo.product(7).await.expect("read"), "product 7");
        }
        repo.put_product(7).await.expect("put");
        repo.rename(7).await.expect("rename");
    })
    .await;
    assert_eq!(repo.loads(), 3, "every read ran the body");
    let cache = test.cache();
    let products = cache.entity("product").expect("entity");
    let metrics = products.metrics();
    assert_eq!(
        (
            metrics.hits,
            metrics.misses,
            metrics.loader_calls,
            metrics.redis_errors
        ),
        (0, 3, 3, 0)
    );
    let key = products.key(&7u64);
    cache
        .set(&key, &"x", Ttl::Short)
        .await
        .expect("a set does nothing");
    assert_eq!(cache.get::<String>(&key).await.expect("get"), None);
    assert_eq!(
        cache
            .invalidate_id(&products, &7u64)
            .await
            .expect("invalidate"),
        0
    );
    let mut asked = Vec::new();
    let values = cache
        .get_or_set_many(
            &products,
            &[1u64, 2, 1],
            ReadOptions::new(Ttl::Short),
            |ids| {
                asked.push(ids.clone());
                async move {
                    let found: HashMap<u64, String> =
                        ids.iter().map(|id| (*id, format!("p{id}"))).collect();
                    Ok::<_, std::io::Error>(found)
                }
            },
        )
        .await
        .expect("batch");
    assert_eq!(asked, [vec![1, 2]]);
    assert_eq!(
        values,
        [Some("p1".into()), Some("p2".into()), Some("p1".into())]
    );
}

#[tokio::test]
async fn caching_off_from_the_environment_never_contacts_redis() {
    let server = crate::RedisServer::start();
    // The harness' own PING when it started the server is not the cache's.
    let _: () = server.query(redis::cmd("CONFIG").arg("RESETSTAT"));
    let env = |name: &str| match name {
        "CACHE_DISABLED" => Some("true".to_owned()),
        "CACHE_REDIS_URL" => Some(server.url()),
        _ => None,
    };
    let config = CacheConfig::from_env_with(env)
        .expect("env")
        .app_prefix("off");
    let cache = cache_runtime::Cache::new(config.build().expect("config")).expect("cache");
    assert!(cache.is_disabled());
    let products = cache.entity("product").expect("entity");
    let key = products.key(&1u64);
    let load = || async { Ok::<_, std::io::Error>(1u64) };
    for _ in 0..3 {
        assert_eq!(
            cache
                .get_or_set(&key, Ttl::Short, load)
                .await
                .expect("read"),
            1
        );
    }
    cache.set(&key, &2u64, Ttl::Short).await.expect("set");
    cache
        .invalidate_entity(&products)
        .await
        .expect("invalidate");
    assert_eq!(products.metrics().loader_calls, 3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let info: String = server.query(redis::cmd("INFO").arg("commandstats"));
    let commands: Vec<&str> = info
        .lines()
        .filter(|line| line.starts_with("cmdstat_"))
        .filter(|line| !line.starts_with("cmdstat_info:") && !line.starts_with("cmdstat_config"))
        .collect();
    assert_eq!(commands, Vec::<&str>::new(), "Redis was contacted");
}

#[test]
fn a_disabled_cache_needs_no_runtime() {
    let test = TestCache::disabled().expect("no runtime needed");
    assert!(test.cache().is_disabled());
}

fn answers(reads: &[Read]) -> Vec<(&str, Tier, Outcome)> {
    reads
        .iter()
        .map(|r| (r.entity.as_str(), r.tier, r.outcome))
        .collect()
}

#[tokio::test]
async fn recorded_reads_say_how_each_read_was_answered() {
    let test = TestCache::in_memory_with(|b| b.jitter_percent(0)).expect("test cache");
    let repo = std::sync::Arc::new(Repo::default());
    let ((), reads) = record(test.run(async {
        repo.product(1).await.expect("miss");
        repo.product(1).await.expect("hit");
        let spawned = cache_runtime::spawn({
            let repo = std::sync::Arc::clone(&repo);
            async move { repo.product(1).await }
        });
        spawned.await.expect("task").expect("hit in a spawned task");
        repo.price(2).await.expect("miss");
    }))
    .await;
    assert_eq!(
        answers(&reads),
        [
            ("product", Tier::Source, Outcome::Miss),
            ("product", Tier::Redis, Outcome::Hit),
            ("product", Tier::Redis, Outcome::Hit),
            ("price", Tier::Source, Outcome::Miss),
        ]
    );
    let product = test.cache().entity("product").expect("entity").key(&1u64);
    assert_eq!(reads[0].key, product.as_str());
    // Past its TTL, inside its stale window, with the source failing: the old value is
    // served (fail-safe).
    let short = test.cache().config().ttl_classes().short;
    assert!(test.advance(short + Duration::from_secs(1)));
    repo.source_down.store(true, Ordering::SeqCst);
    let (old, reads) = record(test.run(repo.price(2))).await;
    assert_eq!(old.expect("read"), 200);
    assert_eq!(answers(&reads), [("price", Tier::Redis, Outcome::Stale)]);
    // Redis gone: the source answers, recorded as a fallback.
    test.memory().expect("in memory").stop();
    let (_, reads) = record(test.run(repo.product(9))).await;
    assert_eq!(
        answers(&reads),
        [("product", Tier::Source, Outcome::Fallback)]
    );
}

#[tokio::test]
async fn concurrent_reads_record_one_miss_and_coalesced_answers_local_hits_their_tier() {
    let test = TestCache::in_memory_with(|b| b.local_tier_for_all(true)).expect("test cache");
    let cache = test.cache();
    let key = cache.entity("slow").expect("entity").key(&1u64);
    let load = || async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, std::io::Error>(1u64)
    };
    let ((), reads) = record(async {
        let (a, b) = tokio::join!(
            cache.get_or_set(&key, Ttl::Short, load),
            cache.get_or_set(&key, Ttl::Short, load)
        );
        assert_eq!((a.expect("a"), b.expect("b")), (1, 1));
        // The local tier keeps the entity's values once this instance hears its key events.
        let started = Instant::now();
        let local = || cache.local_tier_len() > 0;
        while !local() && started.elapsed() < Duration::from_secs(2) {
            assert_eq!(
                cache.get_or_set(&key, Ttl::Short, load).await.expect("c"),
                1
            );
        }
        assert_eq!(
            cache.get_or_set(&key, Ttl::Short, load).await.expect("d"),
            1
        );
    })
    .await;
    let answers = answers(&reads);
    assert_eq!(
        answers[..2],
        [
            ("slow", Tier::Source, Outcome::Miss),
            ("slow", Tier::Source, Outcome::Coalesced),
        ]
    );
    assert!(
        answers[2..].iter().all(|a| a.2 == Outcome::Hit),
        "{answers:?}"
    );
    assert_eq!(answers.last(), Some(&("slow", Tier::Local, Outcome::Hit)));
}

#[tokio::test]
async fn stored_values_come_with_their_ttl_and_the_clock_expires_them() {
    let test = TestCache::in_memory_with(|b| b.jitter_percent(0)).expect("test cache");
    let repo = Repo::default();
    test.run(repo.product(4)).await.expect("read");
    let key = test.cache().entity("product").expect("entity").key(&4u64);
    let stored = test
        .stored::<String>(&key)
        .await
        .expect("read from redis")
        .expect("stored");
    assert_eq!(stored.value.as_deref(), Some("product 4"));
    let medium = test.cache().config().ttl_classes().medium;
    assert_eq!(stored.ttl, medium, "no time passed on the mock clock");
    assert_eq!(stored.fresh_for, medium);
    test.advance(medium - Duration::from_secs(1));
    let stored = test
        .stored::<String>(&key)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.ttl, Duration::from_secs(1));
    test.advance(Duration::from_secs(1));
    assert_eq!(
        test.stored::<String>(&key).await.expect("read"),
        None,
        "expired"
    );
    test.run(repo.product(4)).await.expect("read");
    assert_eq!(repo.loads(), 2, "loaded again once expired");
}

#[tokio::test]
async fn counters_reset_to_zero() {
    let test = TestCache::in_memory().expect("test cache");
    let repo = Repo::default();
    test.run(async {
        repo.product(1).await.expect("miss");
        repo.product(1).await.expect("hit");
    })
    .await;
    let products = test.cache().entity("product").expect("entity");
    assert_eq!((products.metrics().hits, products.metrics().misses), (1, 1));
    test.cache().reset_metrics();
    assert_eq!((products.metrics().hits, products.metrics().misses), (0, 0));
    test.run(repo.product(1)).await.expect("hit");
    assert_eq!((products.metrics().hits, products.metrics().misses), (1, 0));
}

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn gone_within(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn a_test_redis_serves_caches_and_is_killed_when_dropped() {
    let redis = TestRedis::start().expect("redis-server is installed here");
    let pid = redis.pid().expect("running");
    let test = TestCache::on(&redis.url()).expect("test cache");
    let repo = Repo::default();
    test.run(repo.product(1)).await.expect("read");
    let key = test.cache().entity("product").expect("entity").key(&1u64);
    let stored = test
        .stored::<String>(&key)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.value.as_deref(), Some("product 1"));
    assert!(alive(pid));
    // Paused, it answers nothing: the read falls back to the source within the timeout.
    redis.pause(Duration::from_millis(500)).expect("pause");
    let (_, reads) = record(test.run(repo.product(2))).await;
    assert_eq!(reads[0].outcome, Outcome::Fallback);
    drop(test);
    drop(redis);
    assert!(gone_within(pid, Duration::from_secs(2)), "killed on drop");
}

#[test]
fn a_test_redis_in_a_static_is_killed_when_its_process_exits() {
    let out = Command::new(env!("CARGO_BIN_EXE_static_test_redis"))
        .output()
        .expect("run static_test_redis");
    let printed = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = printed.trim().parse().expect("a pid");
    assert!(pid > 0);
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "redis-server {pid} outlived the process that started it"
    );
}

#[test]
fn without_redis_server_a_test_redis_says_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_static_test_redis"))
        .env("PATH", "/nonexistent")
        .output()
        .expect("run static_test_redis");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("error: redis-server is not installed"),
        "{printed}"
    );
}

#[tokio::test]
async fn a_spawned_task_keeps_the_callers_mode() {
    let test = TestCache::in_memory().expect("test cache");
    let repo = std::sync::Arc::new(Repo::default());
    test.run(cache_runtime::uncached(async {
        for _ in 0..2 {
            let repo = repo.clone();
            let task = cache_runtime::spawn(async move { repo.product(1).await });
            task.await.expect("task").expect("read");
        }
    }))
    .await;
    assert_eq!(repo.loads(), 2, "both ran the body");
    let metrics = test.cache().entity("product").expect("entity").metrics();
    assert_eq!((metrics.hits, metrics.misses), (0, 0), "no cache read");
}

#[tokio::test]
async fn a_batch_is_recorded_one_read_per_key() {
    let test = TestCache::in_memory().expect("test cache");
    let cache = test.cache();
    let products = cache.entity("product").expect("entity");
    cache
        .set(&products.key(&1u64), &"one".to_owned(), Ttl::Short)
        .await
        .expect("set");
    let (values, reads) = record(cache.get_or_set_many(
        &products,
        &[1u64, 2],
        ReadOptions::new(Ttl::Short),
        |ids| async move {
            let found: HashMap<u64, String> =
                ids.iter().map(|id| (*id, format!("p{id}"))).collect();
            Ok::<_, std::io::Error>(found)
        },
    ))
    .await;
    assert_eq!(
        values.expect("batch"),
        [Some("one".into()), Some("p2".into())]
    );
    let mut keys: Vec<(String, Tier, Outcome)> = reads
        .into_iter()
        .map(|r| (r.key, r.tier, r.outcome))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        keys,
        [
            (
                products.key(&1u64).as_str().to_owned(),
                Tier::Redis,
                Outcome::Hit
            ),
            (
                products.key(&2u64).as_str().to_owned(),
                Tier::Source,
                Outcome::Miss
            ),
        ]
    );
}

#[test]
fn caching_off_covers_background_refreshes_too() {
    let (log, metrics) = logged(tracing::Level::WARN, false, async {
        let test = TestCache::disabled().expect("test cache");
        let cache = test.cache();
        let key = cache.entity("rates").expect("entity").key("eur");
        let options = ReadOptions::new(Ttl::Short).stale(Duration::from_secs(600));
        let loads = std::sync::Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let loads = loads.clone();
            let rate = cache
                .get_or_set_in_background(&key, options, move || async move {
                    Ok::<_, std::io::Error>(loads.fetch_add(1, Ordering::SeqCst))
                })
                .await
                .expect("read");
            assert!(rate < 2);
        }
        cache.entity("rates").expect("entity").metrics()
    });
    assert_eq!(
        (
            metrics.misses,
            metrics.loader_calls,
            metrics.fallbacks,
            metrics.redis_errors
        ),
        (2, 2, 0, 0)
    );
    assert!(log.is_empty(), "{log}");
}

#[test]
fn a_call_outside_any_scope_on_another_tests_thread_is_not_an_escape() {
    // Another test's scope, live on its own thread and runtime for the whole time.
    let (entered, in_scope) = std::sync::mpsc::channel();
    let (done, finish) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let test = TestCache::in_memory().expect("test cache");
                test.run(async {
                    entered.send(()).expect("send");
                    while finish.try_recv().is_err() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await;
            });
    });
    in_scope.recv().expect("the other test's scope");
    let (log, ()) = logged(tracing::Level::WARN, false, async {
        let repo = Repo::default();
        // No scope on this thread: the installed cache (or none), by this test's choice.
        repo.unscoped_product(1).await.expect("read");
    });
    done.send(()).expect("send");
    other.join().expect("the other thread");
    assert!(!log.contains("unscoped_product"), "{log}");
}
