//! The repository: every read goes through the cache, every write keeps it right.
//!
//! Pages and searches cache the ids they list, not the products: their products come from the
//! product cache, all of a page's at once ([`Catalog::products`]). So a price change touches one product, written through
//! and ordered by its version so that racing changes keep the newest, and its category's
//! statistics; every page and search listing the product shows the new price at once. What
//! they list changes only when products come or go, and that drops everything listing the
//! category (tag `category:{category}`).

use std::collections::HashMap;

use cache_runtime::{cache_put, cached, invalidates};

use crate::db::{Db, DbError, NewProduct, PriceStats, Product, Summary};
use crate::search::Search;

fn ids(products: &[Product]) -> Vec<u64> {
    products.iter().map(|p| p.id).collect()
}

fn summaries(products: &[Product]) -> Vec<Summary> {
    products.iter().map(Summary::from).collect()
}

fn words(search: &Search) -> Vec<String> {
    search.words().map(str::to_owned).collect()
}

/// Why [`Catalog::priced`] stored nothing.
#[derive(Debug)]
enum NotPriced {
    NoSuchProduct,
    Db(DbError),
}

/// The catalog's reads and writes over its database.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub db: Db,
}

impl Catalog {
    /// One product (`None`: no such product, cached too).
    #[cached(entity = "product", ttl = "medium", key = "{id}", local)]
    pub async fn product(&self, id: u64) -> Result<Option<Product>, DbError> {
        self.db.product(id).await
    }

    /// One page of a category, in catalog order. Without a cache (or inside `uncached`), one
    /// query, as a service without one would do it.
    pub async fn listing(&self, category: u32, page: u32) -> Result<Vec<Summary>, DbError> {
        if cache_runtime::current_for_reads().is_none() {
            return Ok(summaries(&self.db.listing(category, page).await?));
        }
        let ids = self.listing_ids(category, page).await?;
        self.summaries(&ids).await
    }

    /// The ids on one page: pages are variants of the category's listing.
    #[cached(
        entity = "product_list",
        ttl = "medium",
        key = "{category}",
        variant = "p{page}",
        tags = ["category:{category}"]
    )]
    async fn listing_ids(&self, category: u32, page: u32) -> Result<Vec<u64>, DbError> {
        Ok(ids(&self.db.listing(category, page).await?))
    }

    /// Products of a category whose name has every word of `search`, in catalog order (one
    /// query without a cache, like [`Self::listing`]).
    pub async fn search(&self, category: u32, search: &Search) -> Result<Vec<Summary>, DbError> {
        if cache_runtime::current_for_reads().is_none() {
            return Ok(summaries(&self.db.search(category, words(search)).await?));
        }
        let ids = self.search_ids(category, search).await?;
        self.summaries(&ids).await
    }

    /// The ids a search finds. The normalised query is the id, so two spellings of one search
    /// share a key.
    #[cached(
        entity = "search",
        ttl = "short",
        key = "{search.as_str()}",
        variant = "c{category}",
        tags = ["category:{category}"]
    )]
    async fn search_ids(&self, category: u32, search: &Search) -> Result<Vec<u64>, DbError> {
        Ok(ids(&self.db.search(category, words(search)).await?))
    }

    /// The products `ids` names, in that order; ids of products that do not exist are left out.
    async fn summaries(&self, ids: &[u64]) -> Result<Vec<Summary>, DbError> {
        let products = self.products(ids).await?;
        let listed = ids.iter().filter_map(|id| products.get(id)?.as_ref());
        Ok(listed.map(Summary::from).collect())
    }

    /// Products by the handful, for the pages and searches that list them, under the keys
    /// [`Self::product`] uses (an unknown id is cached as `None` there too): read from the
    /// cache in one round trip, the missing ones from the database in one query. A product
    /// read just before a change committed is not stored over it: the change's write-through
    /// voids the load's lease.
    #[cached(entity = "product", ttl = "medium", key = "{id}", local, batch)]
    async fn products(&self, ids: &[u64]) -> Result<HashMap<u64, Option<Product>>, DbError> {
        let mut products: HashMap<u64, Option<Product>> =
            ids.iter().map(|&id| (id, None)).collect();
        for product in self.db.products(ids.to_vec()).await? {
            products.insert(product.id, Some(product));
        }
        Ok(products)
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

    /// A new price: one query; the product as written is stored (see [`Self::priced`]) and
    /// its category's statistics go. `None`: no such product.
    pub async fn set_price(&self, id: u64, price_cents: u32) -> Result<Option<Product>, DbError> {
        match self.priced(id, price_cents).await {
            Ok(product) => Ok(product),
            Err(NotPriced::NoSuchProduct) => Ok(None),
            Err(NotPriced::Db(error)) => Err(error),
        }
    }

    /// The write behind [`Self::set_price`], written through so that the next reader of the
    /// product (alone, on a page or in a search) finds it cached. The version orders racing
    /// writes of one product: whichever reaches Redis last, the newest stays. (Stored as an
    /// `Option`, the type [`Self::product`] caches; an unknown product is an error, so nothing
    /// is stored.)
    #[cache_put(
        entity = "product",
        ttl = "medium",
        key = "{id}",
        revision = |product| product.as_ref().map_or(0, |p| p.version)
    )]
    async fn priced(&self, id: u64, price_cents: u32) -> Result<Option<Product>, NotPriced> {
        let product = self
            .db
            .set_price(id, price_cents)
            .await
            .map_err(NotPriced::Db)?
            .ok_or(NotPriced::NoSuchProduct)?;
        self.stats_changed(product.category).await;
        Ok(Some(product))
    }

    /// A new product: one query; what lists its category goes, and so does any absence of its
    /// id cached before it existed. (It is not written through: a category re-price committed
    /// between the insert and the write would not cover the stored value.)
    pub async fn create(&self, new: NewProduct) -> Result<Product, DbError> {
        let product = self.db.insert(new).await?;
        self.category_changed(product.category).await;
        self.product_changed(product.id).await;
        Ok(product)
    }

    #[invalidates(entity = "product", key = "{id}")]
    async fn product_changed(&self, id: u64) {}

    #[invalidates(entity = "category_stats", key = "{category}")]
    async fn stats_changed(&self, category: u32) {}

    /// Everything listing `category` (pages, searches, statistics) is out of date: products
    /// came or went.
    #[invalidates(entity = "product_list", tags = ["category:{category}"])]
    pub async fn category_changed(&self, category: u32) {}

    /// A whole category re-priced, in one query that returns every product as written: each
    /// is written through (ordered, like a price change), and the statistics go. Returns how
    /// many changed.
    pub async fn reprice(&self, category: u32, percent: i32) -> Result<usize, DbError> {
        let products = self.db.reprice(category, percent).await?;
        let changed = products.len();
        for product in products {
            self.write_through(product.id, Some(product)).await?;
        }
        self.stats_changed(category).await;
        Ok(changed)
    }

    /// Stores a product as written by a change, ordered by its version.
    #[cache_put(
        entity = "product",
        ttl = "medium",
        key = "{id}",
        revision = |product| product.as_ref().map_or(0, |p| p.version)
    )]
    async fn write_through(
        &self,
        id: u64,
        product: Option<Product>,
    ) -> Result<Option<Product>, DbError> {
        Ok(product)
    }

    /// Deletes a product; returns its category (whose listings shift: the caller says
    /// [`Self::category_changed`]). The product is then cached as absent, one revision above
    /// its last version, so a price change committed before the delete cannot store it again
    /// however late its write reaches Redis. (Ids are never reused.)
    pub async fn delete(&self, id: u64) -> Result<Option<u32>, DbError> {
        let Some(deleted) = self.db.delete(id).await? else {
            return Ok(None);
        };
        self.absent(id, deleted.version).await?;
        Ok(Some(deleted.category))
    }

    #[cache_put(entity = "product", ttl = "medium", key = "{id}", revision = version + 1)]
    async fn absent(&self, id: u64, version: u64) -> Result<Option<Product>, DbError> {
        Ok(None)
    }
}
