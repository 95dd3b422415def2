use std::time::{Duration, Instant};

use cache_runtime::{Cache, ReadOptions, Ttl, cached, invalidates, with_cache};

use crate::RedisServer;
use crate::{cache, config};

#[cached(entity = "product", key = "{id}", tags = ["category:{category}"])]
async fn product(id: u32, category: u32) -> String {
    format!("product {id} in {category}")
}

#[cached(entity = "product_list", key = "{category}", variant = "p{page}", tags = ["category:{category}"])]
async fn list(category: u32, page: u32) -> Vec<u32> {
    vec![category, page]
}

#[cached(entity = "brand", key = "{id}")]
async fn brand(id: u32) -> String {
    format!("brand {id}")
}

#[invalidates(entity = "product", tags = ["category:{category}"])]
async fn reprice_category(category: u32) -> Result<(), String> {
    let _ = category;
    Ok(())
}

/// The same without an entity: tags span entities.
#[invalidates(tags = ["category:{category}"])]
async fn reprice_any(category: u32) -> Result<(), String> {
    let _ = category;
    Ok(())
}

/// Loader calls per entity so far.
fn loads(cache: &Cache, entity: &str) -> u64 {
    cache.entity(entity).expect("entity").metrics().loader_calls
}

#[tokio::test]
async fn a_tag_invalidates_its_keys_across_entities_and_nothing_else() {
    let server = RedisServer::start();
    let cache = cache(&server);
    with_cache(cache.clone(), async {
        let read_all = || async {
            product(1, 7).await;
            product(2, 8).await;
            list(7, 1).await;
            list(7, 2).await;
            brand(1).await;
        };
        read_all().await;
        read_all().await;
        let before = (
            loads(&cache, "product"),
            loads(&cache, "product_list"),
            loads(&cache, "brand"),
        );
        assert_eq!(before, (2, 2, 1), "the second round was all hits");
        assert_eq!(reprice_category(7).await, Ok(()));
        read_all().await;
        assert_eq!(
            (
                loads(&cache, "product"),
                loads(&cache, "product_list"),
                loads(&cache, "brand"),
            ),
            (3, 4, 1),
            "product 1 and both pages of category 7 reloaded, nothing else"
        );
        cache.invalidate_tag("category:8").await.expect("tag");
        read_all().await;
        assert_eq!(loads(&cache, "product"), 4, "product 2 reloaded");
        assert_eq!(loads(&cache, "product_list"), 4);
        // Without an entity in the attribute: every entity's values with the tag.
        assert_eq!(reprice_any(7).await, Ok(()));
        read_all().await;
        assert_eq!(
            (
                loads(&cache, "product"),
                loads(&cache, "product_list"),
                loads(&cache, "brand"),
            ),
            (5, 6, 1),
            "product 1 and both pages of category 7 again, nothing else"
        );
    })
    .await;
}

#[tokio::test]
async fn entity_wide_invalidation_is_constant_work_in_redis() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let brands = cache.entity("brand").expect("entity");
    for id in 0..50u32 {
        cache
            .set(&products.key(&id), &id, Ttl::Medium)
            .await
            .expect("set");
        cache
            .set(&products.variant_key(&id, "p1"), &id, Ttl::Medium)
            .await
            .expect("set");
    }
    cache
        .set(&brands.key(&1u32), &1u32, Ttl::Medium)
        .await
        .expect("set");
    // Counted by command (other clients' heartbeats run meanwhile): nothing that walks keys.
    let per_key = ["unlink", "del", "scan", "zrange", "smembers", "keys"];
    let walked =
        |server: &RedisServer| -> u64 { per_key.iter().map(|c| server.command_calls(c)).sum() };
    let scripts = |server: &RedisServer| -> u64 {
        server.command_calls("eval") + server.command_calls("evalsha")
    };
    let (walked_before, scripts_before) = (walked(&server), scripts(&server));
    let deleted = cache
        .invalidate_entity(&products)
        .await
        .expect("invalidate");
    assert_eq!(deleted, 0, "nothing is deleted: values become unreadable");
    let mark_ttl: i64 = server.query(redis::cmd("PTTL").arg("test:v1:product:%mark"));
    let week_ms = 7 * 24 * 3600 * 1000;
    assert!(
        (week_ms - 60_000..=week_ms).contains(&mark_ttl),
        "a mark lives 7 days after it was raised: {mark_ttl} ms"
    );
    assert_eq!(
        walked(&server),
        walked_before,
        "no command that walks or deletes keys"
    );
    assert_eq!(
        scripts(&server) - scripts_before,
        2,
        "two small scripts (the epoch, the mark), whatever the entity's size"
    );
    for id in 0..50u32 {
        let plain: Option<u32> = cache.get(&products.key(&id)).await.expect("get");
        let variant: Option<u32> = cache
            .get(&products.variant_key(&id, "p1"))
            .await
            .expect("get");
        assert_eq!((plain, variant), (None, None), "id {id}");
    }
    let brand: Option<u32> = cache.get(&brands.key(&1u32)).await.expect("get");
    assert_eq!(brand, Some(1), "other entities are untouched");
}

#[tokio::test]
async fn a_write_keeps_no_per_key_bookkeeping() {
    let server = RedisServer::start();
    let cache =
        Cache::new(config(&server).jitter_percent(0).build().expect("config")).expect("cache");
    let products = cache.entity("product").expect("entity");
    for id in 0..100u32 {
        cache
            .set(&products.key(&id), &id, Ttl::Medium)
            .await
            .expect("set");
    }
    let mut extra = server.scan("*");
    extra.retain(|key| !key.starts_with("test:v1:product:") || key.contains('%'));
    assert_eq!(
        extra,
        vec![
            "test:%mark",
            "test:v1:product:%mark",
            "{test:%mark}:%epoch",
            "{test:%mark}:%fence",
        ],
        "one mark per entity, one mark, one epoch and one fence per app, nothing per key"
    );
    assert_eq!(
        (server.command_calls("zadd"), server.command_calls("sadd")),
        (0, 0),
        "no index is written"
    );
    assert_eq!(
        server.command_calls("set"),
        105,
        "one SET per value, two to create the entity's mark, three for the fence (epoch, app mark, fence)"
    );
}

#[tokio::test]
async fn a_tag_invalidation_reaches_other_instances_local_tiers() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server), cache(&server));
    crate::subscribed(&[&a, &b]).await;
    let local = ReadOptions::new(Ttl::Medium).local();
    let key = a.entity("product").expect("entity").key(&1u32);
    // Tagged through the macro in a; the plain read below keeps it in a's local tier.
    with_cache(a.clone(), product(1, 7)).await;
    let read = || {
        a.get_or_set_with(&key, local, || async {
            Ok::<_, String>("reloaded".to_owned())
        })
    };
    assert_eq!(read().await.expect("value"), "product 1 in 7");
    assert_eq!(a.local_tier_len(), 1);
    b.invalidate_tag("category:7").await.expect("tag");
    let started = Instant::now();
    while read().await.expect("value") != "reloaded" {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a kept serving its copy"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cached(entity = "pinned", version = 7, key = "{id}", tags = ["group:{g}"])]
async fn pinned(id: u32, g: u32) -> u32 {
    id + g
}

#[invalidates(entity = "pinned", tags = ["group:{g}"])]
async fn regroup(g: u32) -> Result<(), String> {
    let _ = g;
    Ok(())
}

#[tokio::test]
async fn a_tag_reaches_entities_pinned_to_their_own_version() {
    let server = RedisServer::start();
    let cache = cache(&server);
    with_cache(cache.clone(), async {
        pinned(1, 3).await;
        pinned(1, 3).await;
        let pinned_at_7 = cache.entity_at_version("pinned", 7).expect("entity");
        assert_eq!(pinned_at_7.metrics().loader_calls, 1);
        assert_eq!(regroup(3).await, Ok(()));
        pinned(1, 3).await;
        assert_eq!(
            pinned_at_7.metrics().loader_calls,
            2,
            "the tag invalidated it"
        );
    })
    .await;
}
