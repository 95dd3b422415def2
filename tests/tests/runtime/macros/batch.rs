//! `#[cached(batch)]`: a function over many ids reads them through together and runs its body
//! with the ids still missing.

use std::collections::HashMap;

use cache_runtime::{cached, uncached, with_cache};

use super::{Db, DbError, ProductUpdate, Repo, product};
use crate::cache;
use cache_tests::RedisServer;

impl Repo {
    /// The same entity and key as `Repo::product`: one read fills what the other reads.
    #[cached(entity = "product", ttl = "medium", key = "{id}", batch)]
    pub async fn products(&self, ids: &[u64]) -> Result<HashMap<u64, super::Product>, DbError> {
        let rows = self.db.query();
        Ok(ids
            .iter()
            .filter_map(|id| Some((*id, rows.get(id)?.clone())))
            .collect())
    }

    /// Names per language (a variant), tagged with a group, in the in-process tier too; one
    /// answer per id, in order.
    #[cached(
        entity = "product_name",
        ttl = "medium",
        key = "{id}",
        variant = "{lang}",
        tags = ["group:{group}"],
        local,
        batch
    )]
    pub async fn names(&self, ids: Vec<u64>, lang: String, group: u32) -> Vec<Option<String>> {
        let rows = self.db.query();
        ids.iter()
            .map(|id| Some(format!("{lang} {}", rows.get(id)?.name)))
            .collect()
    }

    /// Ids without a product are cached as absent.
    #[cached(
        entity = "maybe_product",
        ttl = "medium",
        key = "{id}",
        cache_none,
        batch
    )]
    pub async fn maybe_products(&self, ids: &[u64]) -> HashMap<u64, super::Product> {
        let rows = self.db.query();
        ids.iter()
            .filter_map(|id| Some((*id, rows.get(id)?.clone())))
            .collect()
    }
}

fn repo() -> Repo {
    Repo {
        db: Db::with_products((1..=5).map(|id| product(id, 7))),
    }
}

#[tokio::test]
async fn a_batch_and_single_reads_share_keys_and_invalidations() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    with_cache(cache.clone(), async {
        assert_eq!(repo.product(1).await, Ok(product(1, 7)));
        let found = repo.products(&[1, 2, 3, 404]).await.expect("batch");
        assert_eq!(found.len(), 3, "404 is left out");
        assert_eq!(found[&2], product(2, 7));
        assert_eq!(repo.db.queries(), 2, "one query for 2, 3 and 404");
        // What the batch stored, a single read finds.
        assert_eq!(repo.product(3).await, Ok(product(3, 7)));
        assert_eq!(repo.db.queries(), 2);

        let update = ProductUpdate {
            name: "renamed".to_owned(),
            category: 7,
        };
        repo.update(2, &update).await.expect("update");
        let queries = repo.db.queries();
        let found = repo.products(&[1, 2, 3]).await.expect("batch");
        assert_eq!(
            found[&2].name, "renamed",
            "the invalidated id is loaded again"
        );
        assert_eq!(repo.db.queries(), queries + 1);
    })
    .await;
    assert_eq!(
        server.cached_keys("test:v1:product:*"),
        [
            "test:v1:product:1",
            "test:v1:product:2",
            "test:v1:product:3"
        ]
    );
}

#[tokio::test]
async fn variants_tags_and_the_local_tier_work_as_in_single_reads() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    let names = cache.entity("product_name").expect("entity");
    crate::subscribed(&[&cache]).await;
    with_cache(cache.clone(), async {
        let en = repo.names(vec![2, 1, 2, 404], "en".to_owned(), 9).await;
        let expected = |lang: &str| {
            vec![
                Some(format!("{lang} product 2")),
                Some(format!("{lang} product 1")),
                Some(format!("{lang} product 2")),
                None,
            ]
        };
        assert_eq!(en, expected("en"));
        assert_eq!(
            repo.names(vec![2, 1, 2, 404], "fr".to_owned(), 9).await,
            expected("fr")
        );
        assert_eq!(repo.db.queries(), 2, "one query per variant");
        assert_eq!(
            repo.names(vec![2, 1, 2, 404], "en".to_owned(), 9).await,
            expected("en")
        );
        assert_eq!(
            repo.db.queries(),
            3,
            "only 404, never cached, is asked again"
        );
        assert_eq!(
            names.metrics().local_hits,
            3,
            "1 and 2 (twice) from the local tier"
        );

        cache.invalidate_tag("group:9").await.expect("invalidate");
        repo.db.rows().get_mut(&1).expect("row").name = "renamed".to_owned();
        let en = repo.names(vec![1], "en".to_owned(), 9).await;
        assert_eq!(
            en,
            [Some("en renamed".to_owned())],
            "the tag invalidation reached the batch's values"
        );
    })
    .await;
    assert!(
        server.cached_keys("test:v1:product_name:1:*").len() == 2,
        "two variants of 1"
    );
}

#[tokio::test]
async fn absences_are_cached_where_the_function_says_so() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    with_cache(cache.clone(), async {
        for _ in 0..3 {
            let found = repo.maybe_products(&[1, 404, 405]).await;
            assert_eq!(found.keys().copied().collect::<Vec<_>>(), [1]);
        }
        assert_eq!(repo.db.queries(), 1, "404 and 405 cached as absent");
        // Without `cache_none`, absences are asked again (see the test above): 404 here.
        repo.products(&[404]).await.expect("batch");
        repo.products(&[404]).await.expect("batch");
        assert_eq!(repo.db.queries(), 3);
    })
    .await;
}

#[tokio::test]
async fn uncached_or_without_a_cache_the_body_gets_every_id() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    let found = repo.products(&[1, 2]).await.expect("no cache installed");
    assert_eq!(found.len(), 2);
    with_cache(cache.clone(), async {
        repo.products(&[1, 2]).await.expect("batch");
        let found = uncached(repo.products(&[1, 2, 3])).await.expect("bypass");
        assert_eq!(found.len(), 3);
    })
    .await;
    assert_eq!(repo.db.queries(), 3);
    assert_eq!(
        server.cached_keys("*").len(),
        2,
        "the bypass stored nothing"
    );
}
