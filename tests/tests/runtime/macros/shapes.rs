//! Every supported function shape, each proved by counting body runs.

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_runtime::{cached, invalidates, with_cache};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{DbError, Product, product};
use crate::cache;
use cache_tests::RedisServer;

/// Counts body runs.
#[derive(Debug, Default)]
pub struct Calls(AtomicUsize);

impl Calls {
    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[cached(entity = "country", ttl = "long", key = "{code}", cache_none = "30s")]
async fn country(code: &str, calls: &Calls) -> Option<String> {
    calls.hit();
    (code == "fr").then(|| "France".to_owned())
}

#[cached(entity = "city", key = "{name.to_lowercase()}")]
async fn city(name: &str, calls: &Calls) -> Option<u32> {
    calls.hit();
    (name.eq_ignore_ascii_case("paris")).then_some(2_100_000)
}

#[cached(entity = "square", ttl = "90s", key = "{n}")]
async fn square(n: u64, calls: &Calls) -> u64 {
    calls.hit();
    n * n
}

// Arguments named like the expansion's own locals must not clash with them.
#[cached(entity = "named", key = "{key}:{cache}:{result}")]
async fn oddly_named(key: &str, cache: u32, result: bool, calls: &Calls) -> String {
    calls.hit();
    format!("{key}/{cache}/{result}")
}

#[cached(entity = "search", ttl = "short", key = "{q.trim()}", condition = q.trim().len() >= 3)]
async fn search(q: &str, calls: &Calls) -> Vec<String> {
    calls.hit();
    vec![q.trim().to_owned()]
}

#[cached(entity = "generic", key = "{id}")]
async fn generic<T>(id: u64, calls: &Calls) -> Result<T, DbError>
where
    T: From<u64> + Serialize + DeserializeOwned,
{
    calls.hit();
    Ok(T::from(id))
}

#[cached(entity = "label", key = "{id}", version = 7)]
async fn label(id: u32, prefix: impl AsRef<str> + Send, calls: &Calls) -> String {
    calls.hit();
    format!("{}-{id}", prefix.as_ref())
}

#[cached(entity = "session", key = "{id}")]
async fn session(id: uuid::Uuid, calls: &Calls) -> String {
    calls.hit();
    id.to_string()
}

pub trait Catalog {
    async fn name(&self, id: u64) -> Result<String, DbError>;
}

#[derive(Debug, Default)]
struct Shop {
    calls: Calls,
    edits: u32,
}

impl Catalog for Shop {
    #[cached(entity = "shop_name", key = "{id}")]
    async fn name(&self, id: u64) -> Result<String, DbError> {
        self.calls.hit();
        Ok(format!("name {id}"))
    }
}

impl Shop {
    #[cached(entity = "shop_edit", key = "{self.edits}")]
    async fn edit(&mut self) -> u32 {
        self.calls.hit();
        self.edits += 1;
        self.edits
    }

    #[invalidates(entity = "shop_name", key = "{id}", before)]
    async fn rename(&self, id: u64) {
        self.calls.hit();
    }
}

#[tokio::test]
async fn options_cache_some_and_none_only_with_cache_none() {
    let server = RedisServer::start();
    let calls = (Calls::default(), Calls::default());
    with_cache(cache(&server), async {
        for _ in 0..2 {
            assert_eq!(country("fr", &calls.0).await.as_deref(), Some("France"));
            assert_eq!(country("xx", &calls.0).await, None);
            assert_eq!(city("Paris", &calls.1).await, Some(2_100_000));
            assert_eq!(city("atlantis", &calls.1).await, None);
        }
    })
    .await;
    assert_eq!(calls.0.count(), 2, "country: Some and None both cached");
    assert_eq!(calls.1.count(), 3, "city: None is not cached");
    let pttl: i64 = server.query(redis::cmd("PTTL").arg("test:v1:country:xx"));
    assert!(
        (27_000..=33_000).contains(&pttl),
        "negative entry has its own TTL: {pttl}"
    );
    assert!(
        server
            .scan("test:v1:city:*")
            .contains(&"test:v1:city:paris".to_owned())
    );
}

#[tokio::test]
async fn plain_values_odd_names_conditions_generics_impl_trait_and_uuids() {
    let server = RedisServer::start();
    let calls: [Calls; 6] = Default::default();
    let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    with_cache(cache(&server), async {
        for _ in 0..2 {
            assert_eq!(square(12, &calls[0]).await, 144);
            assert_eq!(oddly_named("k:1", 2, true, &calls[1]).await, "k:1/2/true");
            assert_eq!(search(" lamp ", &calls[2]).await, vec!["lamp"]);
            assert_eq!(search("ab", &calls[2]).await, vec!["ab"]);
            let value: Result<u64, DbError> = generic(5, &calls[3]).await;
            assert_eq!(value, Ok(5));
            assert_eq!(label(3, "sku", &calls[4]).await, "sku-3");
            assert_eq!(session(id, &calls[5]).await, id.to_string());
        }
    })
    .await;
    let counts: Vec<usize> = calls.iter().map(Calls::count).collect();
    assert_eq!(
        counts,
        vec![1, 1, 3, 1, 1, 1],
        "the short query ran every time"
    );
    let keys = server.cached_keys("*");
    for key in [
        "test:v1:square:12",
        "test:v1:named:k%3A1%3a2%3atrue",
        "test:v1:search:lamp",
        "test:v1:generic:5",
        "test:v7:label:3",
        "test:v1:session:01234567-89ab-cdef-0123-456789abcdef",
    ] {
        assert!(
            keys.contains(&key.to_owned()),
            "{key} missing from {keys:?}"
        );
    }
}

#[tokio::test]
async fn trait_methods_mut_self_and_invalidate_before() {
    let server = RedisServer::start();
    let mut shop = Shop::default();
    with_cache(cache(&server), async {
        assert_eq!(shop.name(1).await, Ok("name 1".to_owned()));
        assert_eq!(shop.name(1).await, Ok("name 1".to_owned()));
        shop.rename(1).await;
        assert_eq!(shop.name(1).await, Ok("name 1".to_owned()));
        assert_eq!(shop.edit().await, 1);
    })
    .await;
    assert_eq!(
        shop.calls.count(),
        4,
        "name, rename, name after invalidation, edit"
    );
    let _: Product = product(1, 1);
}
