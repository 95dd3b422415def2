use cache_runtime::{Cache, cached, refreshing, uncached, with_cache};

use super::{Db, DbError, Repo, Sort, product};
use crate::cache;
use cache_tests::RedisServer;

fn repo() -> Repo {
    Repo {
        db: Db::with_products([product(1, 7), product(2, 7), product(3, 8)]),
    }
}

async fn in_cache<F: std::future::Future>(cache: &Cache, f: F) -> F::Output {
    with_cache(cache.clone(), f).await
}

#[tokio::test]
async fn a_repeated_call_is_a_hit_and_skips_the_body() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    in_cache(&cache, async {
        assert_eq!(repo.product(1).await, Ok(product(1, 7)));
        assert_eq!(repo.product(1).await, Ok(product(1, 7)));
        assert_eq!(repo.product(2).await, Ok(product(2, 7)));
    })
    .await;
    assert_eq!(repo.db.queries(), 2);
    assert_eq!(
        server.cached_keys("*"),
        vec!["test:v1:product:1", "test:v1:product:2"]
    );
}

#[tokio::test]
async fn errors_pass_through_and_are_not_cached() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    in_cache(&cache, async {
        for _ in 0..2 {
            assert_eq!(
                repo.product(404).await,
                Err(DbError("no product 404".to_owned()))
            );
        }
    })
    .await;
    assert_eq!(repo.db.queries(), 2);
    assert!(server.cached_keys("*").is_empty());
}

#[tokio::test]
async fn variants_are_cached_separately() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    in_cache(&cache, async {
        for _ in 0..2 {
            repo.list(7, 0, Sort::Name).await.expect("list");
            repo.list(7, 1, Sort::Name).await.expect("list");
            let newest = repo.list(7, 0, Sort::Newest).await.expect("list");
            assert_eq!(newest.first().map(|p| p.id), Some(2));
        }
    })
    .await;
    assert_eq!(repo.db.queries(), 3);
    assert_eq!(
        server.cached_keys("test:v1:product_list:*"),
        vec![
            "test:v1:product_list:7:p0:name",
            "test:v1:product_list:7:p0:newest",
            "test:v1:product_list:7:p1:name",
        ]
    );
}

#[tokio::test]
async fn refreshing_overwrites_and_uncached_bypasses() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    in_cache(&cache, async {
        repo.product(1).await.expect("cached");
        repo.db.rows().insert(1, product(1, 9)); // changed behind the cache's back
        assert_eq!(
            repo.product(1).await,
            Ok(product(1, 7)),
            "still the cached value"
        );

        assert_eq!(uncached(repo.product(1)).await, Ok(product(1, 9)));
        assert_eq!(
            repo.product(1).await,
            Ok(product(1, 7)),
            "bypass wrote nothing"
        );

        assert_eq!(refreshing(repo.product(1)).await, Ok(product(1, 9)));
        assert_eq!(
            repo.product(1).await,
            Ok(product(1, 9)),
            "refresh overwrote it"
        );
    })
    .await;
    assert_eq!(repo.db.queries(), 3);
}

#[tokio::test]
async fn redis_down_runs_the_body() {
    let mut server = RedisServer::start();
    let cache = cache(&server);
    server.stop();
    let repo = repo();
    in_cache(&cache, async {
        for _ in 0..3 {
            assert_eq!(repo.product(1).await, Ok(product(1, 7)));
        }
    })
    .await;
    assert_eq!(repo.db.queries(), 3);
}

#[cached(entity = "pair", key = "{a}:{b}")]
async fn pair_joined(a: u32, b: u32) -> String {
    format!("joined {a} {b}")
}

#[cached(entity = "pair", key = "{a}", variant = "{b}")]
async fn pair_split(a: u32, b: u32) -> String {
    format!("split {a} {b}")
}

#[tokio::test]
async fn a_colon_in_a_template_never_collides_with_the_variant_separator() {
    let server = RedisServer::start();
    let cache = cache(&server);
    with_cache(cache, async {
        assert_eq!(pair_joined(1, 2).await, "joined 1 2");
        assert_eq!(pair_split(1, 2).await, "split 1 2", "a key of its own");
        assert_eq!(pair_joined(1, 2).await, "joined 1 2");
    })
    .await;
    assert_eq!(
        server.cached_keys("test:v1:pair:*"),
        vec!["test:v1:pair:1%3a2", "test:v1:pair:1:2"]
    );
}

#[tokio::test]
async fn a_write_through_inside_uncached_still_writes() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    in_cache(&cache, async {
        repo.product(1).await.expect("cached");
        let saved = uncached(repo.save(product(1, 9))).await;
        assert_eq!(saved, Ok(product(1, 9)));
        let queries = repo.db.queries();
        assert_eq!(
            repo.product(1).await,
            Ok(product(1, 9)),
            "the write applied"
        );
        assert_eq!(repo.db.queries(), queries, "read from the cache");
    })
    .await;
}

static GATE: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);
static SOURCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reads the source; the first value (1) takes until the gate opens.
#[cached(entity = "gated", key = "{id}")]
async fn gated(id: u32) -> u32 {
    let _ = id;
    let value = SOURCE.load(std::sync::atomic::Ordering::SeqCst);
    if value == 1 {
        STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
        GATE.notified().await;
    }
    value
}

#[tokio::test]
async fn refreshing_runs_the_body_even_while_a_load_is_in_flight() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let slow = tokio::spawn(with_cache(cache.clone(), gated(1)));
    while !STARTED.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    SOURCE.store(2, std::sync::atomic::Ordering::SeqCst);
    let refreshed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        with_cache(cache.clone(), refreshing(gated(1))),
    )
    .await
    .expect("the refresh waited for the load in flight");
    assert_eq!(refreshed, 2);
    GATE.notify_one();
    assert_eq!(slow.await.expect("task"), 1, "it started before");
    assert_eq!(
        with_cache(cache, gated(1)).await,
        2,
        "the refresh's value stays"
    );
}
