use std::time::{Duration, Instant};

use cache_runtime::{Cache, ReadOptions, Ttl, cached, invalidates, with_cache};

use crate::{cache, config};
use cache_tests::RedisServer;

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

fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let info: String = server.query(redis::cmd("INFO").arg("commandstats"));
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_tag_drops_its_keys_across_entities_and_nothing_else() {
    let server = RedisServer::start();
    let cache = cache(&server);
    with_cache(cache.clone(), async {
        product(1, 7).await;
        product(2, 8).await;
        list(7, 1).await;
        list(7, 2).await;
        brand(1).await;
        assert_eq!(reprice_category(7).await, Ok(()));
    })
    .await;
    assert_eq!(
        server.cached_keys("*"),
        vec!["test:v1:brand:1", "test:v1:product:2"]
    );
    assert_eq!(cache.invalidate_tag("category:8").await.expect("tag"), 1);
    assert_eq!(server.cached_keys("*"), vec!["test:v1:brand:1"]);
}

#[tokio::test]
async fn entity_wide_invalidation_needs_no_keyspace_scan() {
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
    let scans = command_calls(&server, "scan");

    assert_eq!(
        cache
            .invalidate_entity(&products)
            .await
            .expect("invalidate"),
        100
    );
    assert_eq!(command_calls(&server, "scan"), scans, "no SCAN was issued");
    assert_eq!(server.cached_keys("*"), vec!["test:v1:brand:1"]);
}

#[tokio::test]
async fn expired_keys_leave_the_indexes() {
    let server = RedisServer::start();
    let cache =
        Cache::new(config(&server).jitter_percent(0).build().expect("config")).expect("cache");
    let products = cache.entity("product").expect("entity");
    cache
        .set(
            &products.key(&1u32),
            &1u32,
            Ttl::Fixed(Duration::from_millis(50)),
        )
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(100)).await;
    cache
        .set(&products.key(&2u32), &2u32, Ttl::Medium)
        .await
        .expect("set");
    let members: Vec<String> = server.query(
        redis::cmd("ZRANGE")
            .arg("test:v1:product:%keys")
            .arg(0)
            .arg(-1),
    );
    assert_eq!(
        members,
        vec!["test:v1:product:2"],
        "the expired key was trimmed"
    );
}

#[tokio::test]
async fn a_tag_invalidation_reaches_other_instances_local_tiers() {
    let server = RedisServer::start();
    let (a, b) = (cache(&server), cache(&server));
    let started = Instant::now();
    while !(a.invalidation_bus_connected() && b.invalidation_bus_connected()) {
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let local = ReadOptions::new(Ttl::Medium).local();
    let key = a.entity("product").expect("entity").key(&1u32);
    // Tagged through the macro in a, so the key is in the tag's index.
    with_cache(a.clone(), product(1, 7)).await;
    a.get_or_set_with(&key, local, || async { Ok::<_, String>("x".to_owned()) })
        .await
        .expect("value");
    assert_eq!(a.local_tier_len(), 1);
    b.invalidate_tag("category:7").await.expect("tag");
    let started = Instant::now();
    while a.local_tier_len() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a kept its copy"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
