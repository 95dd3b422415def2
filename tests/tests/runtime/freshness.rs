use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, CacheKey, ReadOptions, Ttl, cached, with_cache};

use crate::RedisServer;
use crate::config;

/// A source whose answer and failure can be changed, counting its calls.
#[derive(Clone, Default)]
struct Source {
    value: Arc<Mutex<String>>,
    calls: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Source {
    fn set(&self, value: &str) {
        *self.value.lock().expect("lock") = value.to_owned();
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    async fn load(&self, delay: Duration) -> Result<String, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        if self.failing.load(Ordering::SeqCst) {
            return Err("source down".to_owned());
        }
        Ok(self.value.lock().expect("lock").clone())
    }
}

fn exact_cache(server: &RedisServer) -> Cache {
    Cache::new(config(server).jitter_percent(0).build().expect("config")).expect("cache")
}

const SHORT_BUT_STALE: ReadOptions =
    ReadOptions::new(Ttl::Fixed(Duration::from_millis(300))).stale(Duration::from_secs(30));

async fn read(
    cache: &Cache,
    key: &CacheKey,
    options: ReadOptions,
    source: &Source,
    delay: Duration,
) -> Result<String, String> {
    cache
        .get_or_set_with(key, options, || source.load(delay))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_ttl_a_value_is_served_stale_while_one_caller_refreshes_it() {
    let server = RedisServer::start();
    let cache = exact_cache(&server);
    let key = cache.entity("price").expect("entity").key(&1u8);
    let source = Source::default();
    source.set("v1");
    read(&cache, &key, SHORT_BUT_STALE, &source, Duration::ZERO)
        .await
        .expect("load");
    let pttl: i64 = server.query(redis::cmd("PTTL").arg(key.as_str()));
    assert!(pttl > 29_000, "kept for TTL + grace: {pttl}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    source.set("v2");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, key, source) = (cache.clone(), key.clone(), source.clone());
            tokio::spawn(async move {
                read(
                    &cache,
                    &key,
                    SHORT_BUT_STALE,
                    &source,
                    Duration::from_millis(200),
                )
                .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task").expect("value"));
    }
    answers.sort();
    assert_eq!(
        answers.iter().filter(|a| *a == "v1").count(),
        19,
        "{answers:?}"
    );
    assert_eq!(
        answers.last().map(String::as_str),
        Some("v2"),
        "the refreshing caller"
    );
    assert_eq!(source.calls(), 2);
    let metrics = key.entity().metrics();
    assert_eq!(metrics.stale_served, 19);
    assert_eq!(
        read(&cache, &key, SHORT_BUT_STALE, &source, Duration::ZERO).await,
        Ok("v2".to_owned())
    );
}

#[tokio::test]
async fn when_the_source_fails_the_old_value_is_served_and_counted() {
    let server = RedisServer::start();
    let cache = exact_cache(&server);
    let entity = cache.entity("price").expect("entity");
    let (cached, cold) = (entity.key(&1u8), entity.key(&2u8));
    let source = Source::default();
    source.set("v1");
    read(&cache, &cached, SHORT_BUT_STALE, &source, Duration::ZERO)
        .await
        .expect("load");
    tokio::time::sleep(Duration::from_millis(400)).await;

    source.failing.store(true, Ordering::SeqCst);
    assert_eq!(
        read(&cache, &cached, SHORT_BUT_STALE, &source, Duration::ZERO).await,
        Ok("v1".to_owned())
    );
    assert_eq!(
        read(&cache, &cold, SHORT_BUT_STALE, &source, Duration::ZERO).await,
        Err("source down".to_owned()),
        "without an old value the source's error passes through"
    );
    let metrics = entity.metrics();
    assert_eq!((metrics.fail_safe, metrics.loader_errors), (1, 2));
}

#[tokio::test]
async fn a_refresh_slower_than_the_refresh_timeout_serves_the_old_value() {
    let server = RedisServer::start();
    let cache = exact_cache(&server);
    let key = cache.entity("price").expect("entity").key(&1u8);
    let options = SHORT_BUT_STALE.refresh_timeout(Duration::from_millis(100));
    let source = Source::default();
    source.set("v1");
    read(&cache, &key, options, &source, Duration::ZERO)
        .await
        .expect("load");
    tokio::time::sleep(Duration::from_millis(400)).await;

    source.set("v2");
    let started = Instant::now();
    let answer = read(&cache, &key, options, &source, Duration::from_secs(5)).await;
    assert_eq!(answer, Ok("v1".to_owned()));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(key.entity().metrics().fail_safe, 1);
}

#[tokio::test]
async fn early_refresh_recomputes_a_fresh_value_ahead_of_expiry() {
    let server = RedisServer::start();
    let cache = exact_cache(&server);
    let entity = cache.entity("price").expect("entity");
    let source = Source::default();
    source.set("v1");
    // The first load takes 20 ms; with an enormous β any draw puts the refresh before expiry,
    // with a tiny one none does. (The draw itself is unit-tested with injected numbers.)
    let eager = ReadOptions::new(Ttl::Long).early_refresh(1e12);
    let lazy = ReadOptions::new(Ttl::Long).early_refresh(1e-12);
    let (a, b) = (entity.key(&1u8), entity.key(&2u8));
    read(&cache, &a, eager, &source, Duration::from_millis(20))
        .await
        .expect("load");
    read(&cache, &b, lazy, &source, Duration::from_millis(20))
        .await
        .expect("load");
    source.set("v2");

    assert_eq!(
        read(&cache, &a, eager, &source, Duration::ZERO).await,
        Ok("v2".to_owned())
    );
    assert_eq!(
        read(&cache, &b, lazy, &source, Duration::ZERO).await,
        Ok("v1".to_owned())
    );
    assert_eq!(source.calls(), 3);
    assert_eq!(entity.metrics().early_refreshes, 1);
}

#[derive(Default)]
struct Directory {
    entry: Mutex<Option<String>>,
    calls: AtomicUsize,
}

#[cached(entity = "user", key = "{id}", cache_none = "300ms", stale = "30s")]
async fn user(id: u32, directory: &Directory) -> Option<String> {
    directory.calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = id;
    directory.entry.lock().expect("lock").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_absence_goes_stale_and_refreshes_like_a_value() {
    let server = RedisServer::start();
    let cache = exact_cache(&server);
    let directory = Arc::new(Directory::default());
    with_cache(cache.clone(), async {
        assert_eq!(user(7, &directory).await, None);
        assert_eq!(user(7, &directory).await, None, "the absence is cached");
        tokio::time::sleep(Duration::from_millis(400)).await;
        *directory.entry.lock().expect("lock") = Some("ada".to_owned());
        let (refreshing, waiting) = tokio::join!(user(7, &directory), async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            user(7, &directory).await
        });
        assert_eq!((refreshing.as_deref(), waiting), (Some("ada"), None));
        assert_eq!(user(7, &directory).await.as_deref(), Some("ada"));
    })
    .await;
    assert_eq!(directory.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        cache.entity("user").expect("entity").metrics().stale_served,
        1
    );
}

#[derive(Debug, Clone, PartialEq)]
enum ReportError {
    TooSlow,
}

impl From<cache_runtime::LoadTimedOut> for ReportError {
    fn from(_: cache_runtime::LoadTimedOut) -> Self {
        Self::TooSlow
    }
}

#[cached(
    entity = "report",
    ttl = "300ms",
    key = "{id}",
    stale = "30s",
    load_timeout = "100ms"
)]
async fn report(id: u32, delay: Duration, version: u32) -> Result<String, ReportError> {
    tokio::time::sleep(delay).await;
    Ok(format!("report {id} v{version}"))
}

#[tokio::test]
async fn a_load_timeout_bounds_the_source_and_fail_safe_covers_it() {
    let server = RedisServer::start();
    let cache = exact_cache(&server);
    with_cache(cache.clone(), async {
        let started = Instant::now();
        assert_eq!(
            report(1, Duration::from_secs(5), 1).await,
            Err(ReportError::TooSlow)
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );

        assert_eq!(
            report(2, Duration::ZERO, 1).await.as_deref(),
            Ok("report 2 v1")
        );
        tokio::time::sleep(Duration::from_millis(400)).await; // stale now
        let started = Instant::now();
        assert_eq!(
            report(2, Duration::from_secs(5), 2).await.as_deref(),
            Ok("report 2 v1"),
            "the old value, at once; the refresh runs in the background"
        );
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
        // The background refresh hits the load timeout; the old value stays served.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            report(2, Duration::ZERO, 3).await.as_deref(),
            Ok("report 2 v1")
        );
    })
    .await;
    let metrics = cache.entity("report").expect("entity").metrics();
    assert_eq!(
        metrics.loader_errors, 2,
        "the first call and the cut refresh"
    );
    assert!(metrics.stale_served >= 1);
}

static QUOTES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// A free function with owned arguments: its refreshes can run in a background task.
#[cached(entity = "quote", ttl = "300ms", key = "{symbol}", stale = "30s")]
async fn quote(symbol: String) -> Result<String, String> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(format!("{symbol} v{}", QUOTES.load(Ordering::SeqCst)))
}

#[tokio::test]
async fn a_stale_value_is_served_at_once_while_a_background_task_refreshes_it() {
    let server = RedisServer::start();
    let cache = exact_cache(&server);
    with_cache(cache.clone(), async {
        assert_eq!(quote("ACME".to_owned()).await.as_deref(), Ok("ACME v1"));
        tokio::time::sleep(Duration::from_millis(400)).await; // past the TTL, inside the grace
        QUOTES.store(2, Ordering::SeqCst);

        let started = Instant::now();
        assert_eq!(quote("ACME".to_owned()).await.as_deref(), Ok("ACME v1"));
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
        // Concurrent readers during the refresh get the old value too, and start no other.
        assert_eq!(quote("ACME".to_owned()).await.as_deref(), Ok("ACME v1"));

        tokio::time::sleep(Duration::from_millis(400)).await;
        let started = Instant::now();
        assert_eq!(quote("ACME".to_owned()).await.as_deref(), Ok("ACME v2"));
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "a hit: {:?}",
            started.elapsed()
        );
    })
    .await;
    let metrics = cache.entity("quote").expect("entity").metrics();
    assert_eq!(
        metrics.loader_calls, 2,
        "the first load and one background refresh"
    );
    assert_eq!(metrics.stale_served, 2);
}

#[tokio::test]
async fn the_explicit_api_refreshes_in_the_background_too() {
    let server = RedisServer::start();
    let cache = exact_cache(&server);
    let key = cache.entity("rates").expect("entity").key("eur");
    let source = Source::default();
    source.set("v1");
    let load =
        |source: Source| move || async move { source.load(Duration::from_millis(200)).await };
    assert_eq!(
        cache
            .get_or_set_in_background(&key, SHORT_BUT_STALE, load(source.clone()))
            .await
            .as_deref(),
        Ok("v1")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    source.set("v2");
    let started = Instant::now();
    let stale = cache
        .get_or_set_in_background(&key, SHORT_BUT_STALE, load(source.clone()))
        .await;
    assert_eq!(stale.as_deref(), Ok("v1"));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fresh = cache
        .get_or_set_in_background(&key, SHORT_BUT_STALE, load(source.clone()))
        .await;
    assert_eq!(fresh.as_deref(), Ok("v2"));
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn a_background_refresh_that_read_before_a_write_does_not_store_after_it() {
    let server = RedisServer::start();
    let cache = exact_cache(&server);
    let key = cache.entity("rates").expect("entity").key("usd");
    let first = cache
        .get_or_set_in_background(&key, SHORT_BUT_STALE, || async {
            Ok::<_, String>("v1".to_owned())
        })
        .await;
    assert_eq!(first.as_deref(), Ok("v1"));
    tokio::time::sleep(Duration::from_millis(400)).await;

    let gate = Arc::new(tokio::sync::Notify::new());
    let read = Arc::new(tokio::sync::Notify::new());
    let refresh = {
        let (gate, read) = (gate.clone(), read.clone());
        move || async move {
            // Reads the source before the write below, returns after it.
            read.notify_one();
            gate.notified().await;
            Ok::<_, String>("read before the write".to_owned())
        }
    };
    let stale = cache
        .get_or_set_in_background(&key, SHORT_BUT_STALE, refresh)
        .await;
    assert_eq!(stale.as_deref(), Ok("v1"), "served stale while refreshing");
    read.notified().await;
    cache.set(&key, "written", Ttl::Medium).await.expect("set");
    gate.notify_one();
    let entity = cache.entity("rates").expect("entity");
    let started = Instant::now();
    while entity.metrics().stale_sets_prevented == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the refresh never ended"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let value: Option<String> = cache.get(&key).await.expect("get");
    assert_eq!(value.as_deref(), Some("written"));
}
