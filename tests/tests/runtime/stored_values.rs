use cache_runtime::{Cache, CodecKind, Ttl};
use serde::{Deserialize, Serialize};

use crate::{CountingLoader, cache, config};
use cache_tests::RedisServer;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ProductV1 {
    id: u64,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ProductV2 {
    id: u64,
    name: String,
    tags: Vec<String>,
    weight_grams: u32,
}

fn raw(server: &RedisServer, key: &str) -> Vec<u8> {
    server.query(redis::cmd("GET").arg(key))
}

#[tokio::test]
async fn a_value_of_an_older_struct_shape_is_a_miss_and_is_overwritten() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let key = cache.entity("product").expect("entity").key(&1u8);
    let old = ProductV1 {
        id: 1,
        name: "lamp".to_owned(),
    };
    cache.set(&key, &old, Ttl::Short).await.expect("set v1");

    let new = ProductV2 {
        id: 1,
        name: "lamp".to_owned(),
        tags: vec!["light".to_owned()],
        weight_grams: 800,
    };
    let loader = CountingLoader::default();
    let got = cache
        .get_or_set(&key, Ttl::Short, || loader.load(new.clone()))
        .await
        .expect("falls back to the loader");
    assert_eq!(got, new);
    assert_eq!(loader.calls(), 1);
    assert_eq!(key.entity().metrics().decode_failures, 1);
    // Overwritten: the next read is a hit of the new shape.
    assert_eq!(cache.get(&key).await.expect("get"), Some(new));
}

#[tokio::test]
async fn foreign_bytes_under_a_key_are_a_miss_not_an_error() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let key = cache.entity("product").expect("entity").key(&2u8);
    let _: () = server.query(redis::cmd("SET").arg(key.as_str()).arg("not an envelope"));
    assert_eq!(cache.get::<ProductV1>(&key).await.expect("miss"), None);
}

#[tokio::test]
async fn large_values_are_compressed_and_flagged_in_the_envelope() {
    let server = RedisServer::start();
    let cache = Cache::new(
        config(&server)
            .compression_threshold(Some(512))
            .build()
            .expect("config"),
    )
    .expect("cache");
    let entity = cache.entity("page").expect("entity");
    let text = "lorem ipsum dolor sit amet ".repeat(200);

    let (big, small) = (entity.key(&1u8), entity.key(&2u8));
    cache.set(&big, &text, Ttl::Short).await.expect("set");
    cache.set(&small, "short", Ttl::Short).await.expect("set");

    let stored = raw(&server, big.as_str());
    assert!(
        stored.len() < text.len() / 4,
        "{} bytes stored",
        stored.len()
    );
    assert_eq!(stored[2] & 1, 1, "compressed flag");
    assert_eq!(raw(&server, small.as_str())[2] & 1, 0);
    assert_eq!(cache.get::<String>(&big).await.expect("get"), Some(text));
}

#[tokio::test]
async fn json_values_are_readable_and_either_codec_reads_the_other() {
    let server = RedisServer::start();
    let json = Cache::new(
        config(&server)
            .codec(CodecKind::Json)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let postcard = cache(&server);
    let value = ProductV1 {
        id: 7,
        name: "chair".to_owned(),
    };
    let key = json.entity("product").expect("entity").key(&7u8);
    json.set(&key, &value, Ttl::Short).await.expect("set");

    let stored = raw(&server, key.as_str());
    assert!(
        stored.ends_with(br#"{"id":7,"name":"chair"}"#),
        "{stored:?}"
    );
    let read_back: Option<ProductV1> = postcard
        .get(&postcard.entity("product").expect("entity").key(&7u8))
        .await
        .expect("get");
    assert_eq!(read_back, Some(value));
}
