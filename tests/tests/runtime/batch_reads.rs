//! `Cache::get_many`: many keys in one round trip, each checked as `get` checks one.

use cache_runtime::Ttl;
use cache_tests::RedisServer;

use crate::cache;

#[tokio::test]
async fn get_many_answers_in_order_in_one_round_trip() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let pages = cache.entity("product_list").expect("entity");
    let keys = [
        products.key(&1u64),
        products.key(&2u64),
        pages.variant_key(&7u64, "p2"),
        products.key(&3u64),
    ];
    cache.set(&keys[0], &10u32, Ttl::Medium).await.expect("set");
    cache.set(&keys[2], &72u32, Ttl::Medium).await.expect("set");
    cache.set(&keys[3], &30u32, Ttl::Medium).await.expect("set");
    let reads_before = (server.command_calls("mget"), server.command_calls("get"));
    let values = cache.get_many::<u32>(&keys).await.expect("get_many");
    assert_eq!(values, [Some(10), None, Some(72), Some(30)]);
    // One `MGET` of the keys, with the variant's token beside it (without the token the
    // variant's value is not served), and no `GET`.
    let reads_after = (server.command_calls("mget"), server.command_calls("get"));
    assert_eq!(reads_after, (reads_before.0 + 1, reads_before.1));
    assert_eq!(cache.get_many::<u32>(&[]).await.expect("none"), []);
}

#[tokio::test]
async fn get_many_of_a_long_list_reads_100_keys_per_command() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let keys: Vec<_> = (0..1_050u64).map(|id| products.key(&id)).collect();
    for (id, key) in keys.iter().enumerate().step_by(7) {
        cache.set(key, &id, Ttl::Medium).await.expect("set");
    }
    let mgets = server.command_calls("mget");
    let values = cache.get_many::<usize>(&keys).await.expect("get_many");
    let expected: Vec<Option<usize>> = (0..1_050).map(|id| (id % 7 == 0).then_some(id)).collect();
    assert_eq!(values, expected);
    // No command reads more than 100 values: Redis serves other clients between them.
    assert_eq!(server.command_calls("mget") - mgets, 11);
}

#[tokio::test]
async fn get_many_misses_what_invalidations_removed() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let pages = cache.entity("product_list").expect("entity");
    let (product, page) = (products.key(&1u64), pages.variant_key(&7u64, "p0"));
    cache.set(&product, &1u32, Ttl::Medium).await.expect("set");
    cache.set(&page, &2u32, Ttl::Medium).await.expect("set");
    let both = [product.clone(), page.clone()];
    assert_eq!(
        cache.get_many::<u32>(&both).await.expect("read"),
        [Some(1), Some(2)]
    );

    cache
        .invalidate_entity(&products)
        .await
        .expect("invalidate");
    cache
        .invalidate_id(&pages, &7u64)
        .await
        .expect("invalidate");
    assert_eq!(
        cache.get_many::<u32>(&both).await.expect("read"),
        [None, None]
    );
    // Counted like `get`: two hits, then two misses.
    assert_eq!(products.metrics().hits + pages.metrics().hits, 2);
    assert_eq!(products.metrics().misses + pages.metrics().misses, 2);
}
