use cache_runtime::{Cache, PurgeOptions, Ttl};

use crate::{cache, config};
use cache_tests::RedisServer;

async fn fill(cache: &Cache, entity: &str, ids: &[&str]) {
    let entity = cache.entity(entity).expect("entity");
    for id in ids {
        cache
            .set(&entity.key(*id), &1u8, Ttl::Medium)
            .await
            .expect("set");
    }
}

#[tokio::test]
async fn a_pattern_only_ever_matches_inside_its_entity() {
    let server = RedisServer::start();
    let cache = cache(&server);
    fill(&cache, "product", &["1", "12", "2", "a:b"]).await;
    fill(&cache, "product_list", &["1", "12"]).await;
    let products = cache.entity("product").expect("entity");

    assert_eq!(
        cache
            .invalidate_matching(&products, "1*")
            .await
            .expect("glob"),
        2
    );
    // User input cannot widen the match beyond the entity prefix.
    for hostile in ["*:*", "../*", "*product_list*", "\\*"] {
        cache
            .invalidate_matching(&products, hostile)
            .await
            .expect("glob");
    }
    // `*:*` finds no `:` in the escaped `a%3Ab`; nothing of product_list was reachable.
    assert_eq!(
        server.cached_keys("*"),
        vec![
            "test:v1:product:2",
            "test:v1:product:a%3Ab",
            "test:v1:product_list:1",
            "test:v1:product_list:12"
        ]
    );
}

#[tokio::test]
async fn a_version_bump_and_a_purge_leave_no_old_version_key() {
    let server = RedisServer::start();
    let v1 = cache(&server);
    fill(&v1, "product", &["1", "2", "3"]).await;
    let v2 = Cache::new(config(&server).version(2).build().expect("config")).expect("cache");
    fill(&v2, "product", &["1"]).await;
    let pinned = v2.entity_at_version("legacy", 1).expect("entity");
    v2.set(&pinned.key("x"), &1u8, Ttl::Medium)
        .await
        .expect("set");
    let other_app =
        Cache::new(config(&server).app_prefix("other").build().expect("config")).expect("cache");
    fill(&other_app, "product", &["1"]).await;

    // Unreachable at once: v2 reads only v2 keys.
    let miss: Option<u8> = v2
        .get(&v2.entity("product").expect("entity").key("2"))
        .await
        .expect("get");
    assert_eq!(miss, None);

    // Resumable: one step of one key, then the rest.
    let first = v2
        .purge_old_versions(PurgeOptions::default().batch(1).max_batches(1))
        .await
        .expect("purge");
    assert!(!first.done);
    let cursor: Option<u64> = server.query(redis::cmd("GET").arg("test:%purge-cursor"));
    assert!(cursor.is_some(), "progress is saved");
    let rest = v2
        .purge_old_versions(PurgeOptions::default().batch(2))
        .await
        .expect("purge");
    assert!(rest.done);
    // 3 values and the v1 product entity's invalidation mark.
    assert_eq!(first.removed + rest.removed, 4);
    assert_eq!(
        server.cached_keys("*"),
        vec![
            "other:v1:product:1",
            "test:v1:legacy:x",
            "test:v2:product:1"
        ],
        "the pinned entity's version and other apps stay"
    );
}

#[tokio::test]
async fn a_purge_never_touches_an_entity_pinned_ahead_that_it_has_not_used() {
    let server = RedisServer::start();
    let old = cache(&server);
    fill(&old, "product", &["1"]).await;
    let writer = Cache::new(config(&server).version(2).build().expect("config")).expect("cache");
    let pinned = writer.entity_at_version("migrated", 5).expect("entity");
    writer
        .set(&pinned.key("x"), &1u8, Ttl::Medium)
        .await
        .expect("set");
    // A process that just started and never looked the pinned entity up.
    let fresh = Cache::new(config(&server).version(2).build().expect("config")).expect("cache");
    let report = fresh
        .purge_old_versions(PurgeOptions::default())
        .await
        .expect("purge");
    assert!(report.done);
    assert_eq!(server.cached_keys("*"), vec!["test:v5:migrated:x"]);
}
