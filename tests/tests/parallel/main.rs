//! Twenty tests of one small repository, run in parallel in one binary (libtest's default),
//! each caching the same ids with values of its own and reading them from tasks it spawns:
//! once on the in-memory Redis (no redis-server needed), once on one shared test Redis.
//! No test may see another's values, and every read must reach its own test's cache.
#![deny(warnings, clippy::all)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use cache_runtime::testing::{TestCache, TestRedis, TestRedisError};
use cache_runtime::{cached, invalidates};

#[derive(Debug, Default)]
struct Repo {
    test: u32,
    /// Bumped by each rename: part of every value, so a stale read shows.
    version: AtomicUsize,
    loads: AtomicUsize,
}

impl Repo {
    #[cached(entity = "product", ttl = "medium", key = "{id}")]
    async fn product(&self, id: u64) -> Result<String, std::io::Error> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let version = self.version.load(Ordering::SeqCst);
        Ok(format!("test {} product {id} v{version}", self.test))
    }

    #[invalidates(entity = "product", key = "{id}")]
    async fn rename(&self, id: u64) -> Result<(), std::io::Error> {
        let _ = id;
        self.version.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

const IDS: u64 = 10;

async fn case(test: u32, cache: TestCache) {
    let repo = Arc::new(Repo {
        test,
        ..Repo::default()
    });
    cache
        .run(async {
            for id in 0..IDS {
                let value = repo.product(id).await.expect("loaded");
                assert_eq!(value, format!("test {test} product {id} v0"));
            }
            // Read again from spawned tasks: hits in this test's cache, not loads.
            let tasks: Vec<_> = (0..IDS)
                .map(|id| {
                    let repo = repo.clone();
                    cache_runtime::spawn(async move { (id, repo.product(id).await) })
                })
                .collect();
            for task in tasks {
                let (id, value) = task.await.expect("the task");
                assert_eq!(value.expect("read"), format!("test {test} product {id} v0"));
            }
            assert_eq!(
                repo.loads.load(Ordering::SeqCst),
                IDS as usize,
                "test {test}"
            );
            repo.rename(3).await.expect("renamed");
            let renamed = cache_runtime::spawn({
                let repo = repo.clone();
                async move { repo.product(3).await }
            });
            let renamed = renamed.await.expect("the task").expect("read");
            assert_eq!(renamed, format!("test {test} product 3 v1"));
        })
        .await;
    assert_eq!(repo.loads.load(Ordering::SeqCst), IDS as usize + 1);
    let metrics = cache.cache().entity("product").expect("entity").metrics();
    assert_eq!(
        (metrics.hits, metrics.misses),
        (IDS, IDS + 1),
        "test {test}"
    );
}

/// One redis-server for every test of the binary, in a `static`: never dropped, killed by its
/// watchdog when the binary exits.
static REDIS: LazyLock<Result<TestRedis, TestRedisError>> = LazyLock::new(TestRedis::start);

fn on_test_redis() -> TestCache {
    let redis = match &*REDIS {
        Ok(redis) => redis,
        Err(error) => panic!("{error}"),
    };
    TestCache::on(&redis.url()).expect("a test cache")
}

fn in_memory() -> TestCache {
    TestCache::in_memory().expect("a test cache")
}

macro_rules! twenty {
    ($backend:ident: $($name:ident = $n:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                crate::case($n, crate::$backend()).await;
            }
        )*
    };
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            twenty!($backend:
                test_01 = 1, test_02 = 2, test_03 = 3, test_04 = 4, test_05 = 5,
                test_06 = 6, test_07 = 7, test_08 = 8, test_09 = 9, test_10 = 10,
                test_11 = 11, test_12 = 12, test_13 = 13, test_14 = 14, test_15 = 15,
                test_16 = 16, test_17 = 17, test_18 = 18, test_19 = 19, test_20 = 20,
            );
        }
    };
}

suite!(in_memory);
suite!(on_test_redis);
