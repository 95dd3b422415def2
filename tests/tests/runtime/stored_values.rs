use cache_runtime::{Cache, CodecKind, Ttl};
use serde::{Deserialize, Serialize};

use crate::RedisServer;
use crate::{CountingLoader, cache, config};

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
    // JSON, readable in redis-cli, before the 8-byte checksum.
    assert!(
        stored[..stored.len() - 8].ends_with(br#"{"id":7,"name":"chair"}"#),
        "{stored:?}"
    );
    let read_back: Option<ProductV1> = postcard
        .get(&postcard.entity("product").expect("entity").key(&7u8))
        .await
        .expect("get");
    assert_eq!(read_back, Some(value));
}

#[tokio::test]
async fn a_compressible_value_over_the_limit_is_oversize_on_both_sides() {
    let server = RedisServer::start();
    let cache = Cache::new(
        config(&server)
            .max_value_bytes(64 * 1024)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let pages = cache.entity("page").expect("entity");
    let key = pages.key(&1u32);
    // Compresses to a few hundred bytes, but is 200 kB as encoded.
    let zeros = vec![0u8; 200_000];
    let mut loads = 0;
    for _ in 0..2 {
        let value = cache
            .get_or_set(&key, Ttl::Medium, || async {
                loads += 1;
                Ok::<_, String>(zeros.clone())
            })
            .await
            .expect("value");
        assert_eq!(value.len(), 200_000);
    }
    assert_eq!(loads, 2, "never stored, so never read back");
    let metrics = pages.metrics();
    assert_eq!((metrics.oversize_skips, metrics.decode_failures), (2, 0));
    let stored: Option<Vec<u8>> = server.query(redis::cmd("GET").arg("test:v1:page:1"));
    assert_eq!(stored, None);
}

#[tokio::test]
async fn compression_is_kept_only_when_it_makes_the_value_smaller() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let pages = cache.entity("page").expect("entity");
    // 5,000 bytes that LZ4 cannot shrink (a xorshift sequence), and 5,000 it can.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..5_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let text = b"a lamp, a desk, a chair. ".repeat(200);
    cache
        .set(&pages.key(&1u32), &noise, Ttl::Medium)
        .await
        .expect("set");
    cache
        .set(&pages.key(&2u32), &text, Ttl::Medium)
        .await
        .expect("set");
    let compressed = |key: &str| -> bool {
        let bytes: Vec<u8> = server.query(redis::cmd("GET").arg(key));
        cache_runtime::envelope_format::Header::unwrap(&bytes)
            .expect("envelope")
            .header
            .compressed
    };
    assert!(
        !compressed("test:v1:page:1"),
        "LZ4 would have made it larger"
    );
    assert!(compressed("test:v1:page:2"));
    let back: Option<Vec<u8>> = cache.get(&pages.key(&1u32)).await.expect("get");
    assert_eq!(back.as_deref(), Some(&noise[..]));
}

#[tokio::test]
async fn a_corrupted_value_is_a_miss_never_another_value() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let key = products.key(&1u32);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..500 {
        let value = (round, format!("product {round}"), vec![round; 20]);
        cache.set(&key, &value, Ttl::Medium).await.expect("set");
        let stored = raw(&server, "test:v1:product:1");
        let at = usize::try_from(next() % stored.len() as u64).expect("index");
        let flip = u8::try_from(next() % 255 + 1).expect("non-zero");
        let mut corrupt = stored.clone();
        corrupt[at] ^= flip;
        let _: () = server.query(redis::cmd("SET").arg("test:v1:product:1").arg(corrupt));
        let read: Option<(u32, String, Vec<u32>)> = cache.get(&key).await.expect("get");
        assert_eq!(
            read, None,
            "round {round}: byte {at} ^ {flip:#x} still decoded"
        );
    }
    assert_eq!(products.metrics().decode_failures, 500);
}
