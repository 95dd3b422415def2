use cache_runtime::with_cache;

use super::{Db, ProductUpdate, Repo, Sort, product};
use crate::cache;
use cache_tests::RedisServer;

fn repo() -> Repo {
    Repo {
        db: Db::with_products([product(1, 7), product(2, 7), product(3, 8)]),
    }
}

#[tokio::test]
async fn invalidation_drops_the_id_with_all_its_variants_and_nothing_else() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    with_cache(cache, async {
        repo.product(1).await.expect("product");
        repo.product(2).await.expect("product");
        repo.list(7, 0, Sort::Name).await.expect("list");
        repo.list(7, 1, Sort::Newest).await.expect("list");
        repo.list(8, 0, Sort::Name).await.expect("list");
        let before = repo.db.queries();

        let update = ProductUpdate {
            name: "renamed".to_owned(),
            category: 7,
        };
        repo.update(1, &update).await.expect("update");
        assert_eq!(
            server.cached_keys("test:v1:product:*"),
            vec!["test:v1:product:2"],
            "the product's own key is deleted"
        );

        assert_eq!(repo.product(1).await.expect("product").name, "renamed");
        repo.product(2).await.expect("still cached");
        repo.list(8, 0, Sort::Name).await.expect("still cached");
        let lists = repo.list(7, 0, Sort::Name).await.expect("reloaded");
        assert!(lists.iter().any(|p| p.name == "renamed"));
        assert_eq!(
            repo.db.queries(),
            before + 1 + 2,
            "update, product 1, list 7"
        );
    })
    .await;
}

#[tokio::test]
async fn a_failed_update_invalidates_nothing() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    with_cache(cache, async {
        repo.product(1).await.expect("product");
        let update = ProductUpdate {
            name: "x".to_owned(),
            category: 7,
        };
        assert!(repo.update(404, &update).await.is_err());
        assert_eq!(server.cached_keys("*"), vec!["test:v1:product:1"]);
    })
    .await;
}

#[tokio::test]
async fn entity_wide_invalidation_drops_every_key_of_that_entity_only() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    with_cache(cache, async {
        repo.product(1).await.expect("product");
        repo.list(7, 0, Sort::Name).await.expect("list");
        repo.list(8, 0, Sort::Newest).await.expect("list");
        assert_eq!(repo.import(vec![product(4, 8)]).await, Ok(1));
        let before = repo.db.queries();
        repo.product(1).await.expect("product");
        assert_eq!(repo.db.queries(), before, "other entities stay cached");
        let list = repo.list(8, 0, Sort::Name).await.expect("list");
        assert_eq!(list.len(), 2, "reloaded with the imported product");
        repo.list(7, 0, Sort::Name).await.expect("list");
        assert_eq!(repo.db.queries(), before + 2, "both listings reloaded");
    })
    .await;
    drop(server);
}

#[tokio::test]
async fn write_through_stores_the_result_for_readers() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let repo = repo();
    with_cache(cache, async {
        let saved = repo.save(product(5, 9)).await.expect("save");
        assert_eq!(saved, product(5, 9));
        let before = repo.db.queries();
        assert_eq!(repo.product(5).await, Ok(product(5, 9)));
        assert_eq!(repo.db.queries(), before, "read from the cache");
    })
    .await;
}
