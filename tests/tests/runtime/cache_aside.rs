use std::time::Duration;

use cache_runtime::{CacheError, Ttl};
use serde::{Deserialize, Serialize};

use crate::RedisServer;
use crate::{CountingLoader, cache, config};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u32,
}

fn lamp() -> Product {
    Product {
        id: 42,
        name: "desk lamp".to_owned(),
        price_cents: 1999,
    }
}

#[tokio::test]
async fn get_or_set_calls_the_loader_once_then_serves_hits() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let key = products.key(&42u64);
    let loader = CountingLoader::default();

    for _ in 0..3 {
        let got = cache
            .get_or_set(&key, Ttl::Medium, || loader.load(lamp()))
            .await
            .expect("loaded");
        assert_eq!(got, lamp());
    }

    assert_eq!(loader.calls(), 1);
    let metrics = products.metrics();
    assert_eq!(
        (metrics.hits, metrics.misses, metrics.loader_calls),
        (2, 1, 1)
    );
    assert_eq!(
        server.cached_keys("*"),
        vec!["test:v1:product:42".to_owned()]
    );
}

#[tokio::test]
async fn loader_errors_pass_through_unchanged_and_are_not_cached() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let key = cache.entity("product").expect("entity").key(&1u64);

    let err = cache
        .get_or_set(&key, Ttl::Short, || async {
            Err::<Product, _>(std::io::Error::other("db down"))
        })
        .await
        .expect_err("loader error");
    assert_eq!(err.to_string(), "db down");
    assert!(server.cached_keys("*").is_empty());
    assert_eq!(key.entity().metrics().loader_errors, 1);
}

#[tokio::test]
async fn explicit_get_set_delete_round_trip() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let key = cache.entity("product").expect("entity").key(&42u64);

    assert_eq!(cache.get::<Product>(&key).await.expect("get"), None);
    cache.set(&key, &lamp(), Ttl::Short).await.expect("set");
    assert_eq!(cache.get(&key).await.expect("get"), Some(lamp()));
    assert!(cache.delete(&key).await.expect("delete"));
    assert!(!cache.delete(&key).await.expect("second delete"));
    assert_eq!(cache.get::<Product>(&key).await.expect("get"), None);
}

#[tokio::test]
async fn ids_variants_and_entities_get_separate_keys() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let lists = cache.entity("product_list").expect("entity");
    let products = cache.entity("product").expect("entity");

    cache
        .set(&lists.variant_key(&7u32, "p1"), &vec![1u64], Ttl::Short)
        .await
        .expect("set");
    cache
        .set(&lists.variant_key(&7u32, "p2"), &vec![2u64], Ttl::Short)
        .await
        .expect("set");
    cache
        .set(&products.key(&7u32), &lamp(), Ttl::Short)
        .await
        .expect("set");
    cache
        .set(&products.key("a:b*"), &lamp(), Ttl::Short)
        .await
        .expect("set");

    assert_eq!(
        server.cached_keys("test:v1:*"),
        vec![
            "test:v1:product:7",
            "test:v1:product:a%3Ab%2A",
            "test:v1:product_list:7:p1",
            "test:v1:product_list:7:p2",
        ]
    );
    assert_eq!(server.cached_keys(&products.pattern()).len(), 2);
    assert_eq!(server.scan(&lists.variants_pattern(&7u32)).len(), 2);
    let token: Option<u64> =
        server.query(redis::cmd("GET").arg("{test:v1:product_list:7}:%variants"));
    assert!(token.is_some(), "the id's variants share one token");
    let p2: Option<Vec<u64>> = cache
        .get(&lists.variant_key(&7u32, "p2"))
        .await
        .expect("get");
    assert_eq!(p2, Some(vec![2]));
}

#[tokio::test]
async fn the_configured_version_and_a_pinned_entity_version_appear_in_keys() {
    let server = RedisServer::start();
    let cache = cache_runtime::Cache::new(config(&server).version(3).build().expect("config"))
        .expect("cache");
    let current = cache.entity("product").expect("entity");
    let pinned = cache.entity_at_version("product", 4).expect("entity");
    cache
        .set(&current.key(&1u8), &1u8, Ttl::Short)
        .await
        .expect("set");
    cache
        .set(&pinned.key(&1u8), &1u8, Ttl::Short)
        .await
        .expect("set");
    assert_eq!(
        server.cached_keys("*"),
        vec!["test:v3:product:1", "test:v4:product:1"]
    );
}

#[tokio::test]
async fn ttls_carry_jitter_within_the_configured_band() {
    let server = RedisServer::start();
    let cache = cache(&server); // 10 % jitter by default
    let entity = cache.entity("stock").expect("entity");
    let ttl = Duration::from_secs(100);

    let mut pttls = Vec::new();
    for id in 0..200u32 {
        let key = entity.key(&id);
        cache.set(&key, &id, Ttl::Fixed(ttl)).await.expect("set");
        let pttl: i64 = server.query(redis::cmd("PTTL").arg(key.as_str()));
        pttls.push(pttl);
    }

    let (min, max) = (pttls.iter().min().copied(), pttls.iter().max().copied());
    assert!(min >= Some(89_000), "{min:?}");
    assert!(max <= Some(110_000), "{max:?}");
    // 200 uniform draws over a 20 s band spread over far more than 5 s.
    assert!(
        max.unwrap_or(0) - min.unwrap_or(0) > 5_000,
        "{min:?}..{max:?}"
    );
}

#[tokio::test]
async fn ttl_classes_resolve_to_the_configured_durations() {
    let server = RedisServer::start();
    let cache = cache_runtime::Cache::new(
        config(&server)
            .ttl_short(Duration::from_secs(30))
            .jitter_percent(0)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let key = cache.entity("stock").expect("entity").key(&1u8);
    cache.set(&key, &1u8, Ttl::Short).await.expect("set");
    let pttl: i64 = server.query(redis::cmd("PTTL").arg(key.as_str()));
    assert!((29_000..=30_000).contains(&pttl), "{pttl}");
    cache.set(&key, &1u8, Ttl::Long).await.expect("set");
    let ttl: i64 = server.query(redis::cmd("TTL").arg(key.as_str()));
    assert!((86_399..=86_400).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn oversize_values_are_returned_but_not_stored() {
    let server = RedisServer::start();
    let cache = cache_runtime::Cache::new(
        config(&server)
            .max_value_bytes(256)
            .compression_threshold(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let key = cache.entity("blob").expect("entity").key(&1u8);
    let big = "x".repeat(1000);

    let got = cache
        .get_or_set(&key, Ttl::Short, || async {
            Ok::<_, std::io::Error>(big.clone())
        })
        .await
        .expect("loaded");
    assert_eq!(got, big);
    assert!(server.cached_keys("*").is_empty());
    assert_eq!(key.entity().metrics().oversize_skips, 1);
    let err = cache
        .set(&key, &big, Ttl::Short)
        .await
        .expect_err("too large");
    assert!(
        matches!(err, CacheError::TooLarge { limit: 256, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn invalidate_id_removes_the_id_and_every_variant_without_touching_neighbours() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let lists = cache.entity("product_list").expect("entity");
    for (id, page) in [(7u32, "p1"), (7, "p2"), (70, "p1")] {
        cache
            .set(&lists.variant_key(&id, page), &1u8, Ttl::Short)
            .await
            .expect("set");
    }
    cache
        .set(&lists.key(&7u32), &1u8, Ttl::Short)
        .await
        .expect("set");

    assert_eq!(
        cache
            .invalidate_id(&lists, &7u32)
            .await
            .expect("invalidate"),
        1,
        "the id's own key is deleted; its variants lost their token"
    );
    for (id, page, expected) in [(7u32, "p1", None), (7, "p2", None), (70, "p1", Some(1u8))] {
        let value: Option<u8> = cache.get(&lists.variant_key(&id, page)).await.expect("get");
        assert_eq!(value, expected, "{id}:{page}");
    }
    let plain: Option<u8> = cache.get(&lists.key(&7u32)).await.expect("get");
    assert_eq!(plain, None);
    let token_ttl: i64 =
        server.query(redis::cmd("PTTL").arg("{test:v1:product_list:70}:%variants"));
    assert!(
        token_ttl > 0,
        "the token expires with its variants: {token_ttl}"
    );
}
