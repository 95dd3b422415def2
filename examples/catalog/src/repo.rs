//! The repository: every read goes through the cache, every write says what it invalidates.

use cache_runtime::{cached, invalidates};

use crate::db::{Db, DbError, PriceStats, Product, Summary};

/// The catalog's reads and writes over its database.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub db: Db,
}

impl Catalog {
    /// One product (`None`: no such product, cached too, briefly).
    #[cached(entity = "product", ttl = "medium", key = "{id}", local)]
    pub async fn product(&self, id: u64) -> Result<Option<Product>, DbError> {
        self.db.product(id).await
    }

    /// One page of a category: pages are variants of the category's listing.
    #[cached(
        entity = "product_list",
        ttl = "short",
        key = "{category}",
        variant = "p{page}",
        tags = ["category:{category}"]
    )]
    pub async fn listing(&self, category: u32, page: u32) -> Result<Vec<Summary>, DbError> {
        self.db.listing(category, page).await
    }

    /// Products of a category whose name contains `query` (already normalised: the id is the
    /// query, so two spellings of one search share a key).
    #[cached(
        entity = "search",
        ttl = "short",
        key = "{query}",
        variant = "c{category}",
        tags = ["category:{category}"]
    )]
    pub async fn search(&self, category: u32, query: &str) -> Result<Vec<Summary>, DbError> {
        self.db.search(category, query.to_owned()).await
    }

    /// The expensive aggregation.
    #[cached(
        entity = "category_stats",
        ttl = "medium",
        key = "{category}",
        tags = ["category:{category}"],
        stale = "1m"
    )]
    pub async fn price_stats(&self, category: u32) -> Result<PriceStats, DbError> {
        self.db.price_stats(category).await
    }

    /// A new price; returns the new version and the product's category. The write is one
    /// query: the category comes back with it, and `category_changed` invalidates by it.
    #[invalidates(entity = "product", key = "{id}")]
    pub async fn set_price(
        &self,
        id: u64,
        price_cents: u32,
    ) -> Result<Option<(u64, u32)>, DbError> {
        self.db.set_price(id, price_cents).await
    }

    /// Everything listing `category` (pages, searches, statistics) is out of date.
    #[invalidates(entity = "product_list", tags = ["category:{category}"])]
    pub async fn category_changed(&self, category: u32) {}

    /// A whole category re-priced: its products and everything listing it.
    #[invalidates(entity = "product", all)]
    #[invalidates(entity = "product_list", tags = ["category:{category}"])]
    pub async fn reprice(&self, category: u32, percent: i32) -> Result<u64, DbError> {
        self.db.reprice(category, percent).await
    }

    /// Deletes a product; returns its category.
    #[invalidates(entity = "product", key = "{id}")]
    pub async fn delete(&self, id: u64) -> Result<Option<u32>, DbError> {
        self.db.delete(id).await
    }
}
