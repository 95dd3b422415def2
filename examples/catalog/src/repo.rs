//! The repository: every read goes through the cache, every write says what it invalidates.
//!
//! A price change writes the product through (ordered by its version, so racing changes keep
//! the newest) and drops exactly what shows the old price: the one listing page it is on, the
//! searches its name can match and its category's statistics. Tags name those
//! (`page:{category}:{page}`, `word:{category}:{word}`); everything listing a category also
//! carries `category:{category}`, for the writes that change a whole category.

use cache_runtime::{cache_put, cached, invalidates};

use crate::db::{Db, DbError, NewProduct, PriceStats, Product, Summary, Written};
use crate::search::Search;

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
        tags = ["category:{category}", "page:{category}:{page}"]
    )]
    pub async fn listing(&self, category: u32, page: u32) -> Result<Vec<Summary>, DbError> {
        self.db.listing(category, page).await
    }

    /// Products of a category whose name has every word of `search`. The normalised query is
    /// the id, so two spellings of one search share a key; its first word is the tag, since
    /// every product it finds has that word.
    #[cached(
        entity = "search",
        ttl = "short",
        key = "{search.as_str()}",
        variant = "c{category}",
        tags = ["category:{category}", "word:{category}:{search.first_word()}"]
    )]
    pub async fn search(&self, category: u32, search: &Search) -> Result<Vec<Summary>, DbError> {
        self.db
            .search(category, search.words().map(str::to_owned).collect())
            .await
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

    /// A new price: one query, which also says where the product is listed; then its page,
    /// the searches its name can match and its category's statistics go, and the product as
    /// written is stored (see [`Self::priced`]). `None`: no such product.
    pub async fn set_price(&self, id: u64, price_cents: u32) -> Result<Option<Product>, DbError> {
        match self.priced(id, price_cents).await {
            Ok(product) => Ok(product),
            Err(NotPriced::NoSuchProduct) => Ok(None),
            Err(NotPriced::Db(error)) => Err(error),
        }
    }

    /// The write behind [`Self::set_price`], written through so that the next reader of the
    /// product finds it cached. The version orders racing writes of one product: whichever
    /// reaches Redis last, the newest stays. (Stored as an `Option`, the type
    /// [`Self::product`] caches; an unknown product is an error, so nothing is stored.)
    #[cache_put(
        entity = "product",
        ttl = "medium",
        key = "{id}",
        revision = |product| product.as_ref().map_or(0, |p| p.version)
    )]
    async fn priced(&self, id: u64, price_cents: u32) -> Result<Option<Product>, NotPriced> {
        let written = self
            .db
            .set_price(id, price_cents)
            .await
            .map_err(NotPriced::Db)?
            .ok_or(NotPriced::NoSuchProduct)?;
        self.listed_product_changed(&written).await;
        Ok(Some(written.product))
    }

    /// A new product: one query; what lists it goes, and so does any absence of its id cached
    /// before it existed. (It is not written through: a category re-price committed between
    /// the insert and the write would not cover the stored value.)
    pub async fn create(&self, new: NewProduct) -> Result<Product, DbError> {
        let written = self.db.insert(new).await?;
        self.listed_product_changed(&written).await;
        self.product_changed(written.product.id).await;
        Ok(written.product)
    }

    #[invalidates(entity = "product", key = "{id}")]
    async fn product_changed(&self, id: u64) {}

    /// The page that lists `written`, the searches its name can match and its category's
    /// statistics are out of date.
    async fn listed_product_changed(&self, written: &Written) {
        let category = written.product.category;
        self.page_changed(category, written.page()).await;
        for word in Search::words_of(&written.product.name) {
            self.word_changed(category, &word).await;
        }
        self.stats_changed(category).await;
    }

    #[invalidates(entity = "product_list", tags = ["page:{category}:{page}"])]
    async fn page_changed(&self, category: u32, page: u32) {}

    #[invalidates(entity = "search", tags = ["word:{category}:{word}"])]
    async fn word_changed(&self, category: u32, word: &str) {}

    #[invalidates(entity = "category_stats", key = "{category}")]
    async fn stats_changed(&self, category: u32) {}

    /// Everything listing `category` (pages, searches, statistics) is out of date.
    #[invalidates(entity = "product_list", tags = ["category:{category}"])]
    pub async fn category_changed(&self, category: u32) {}

    /// A whole category re-priced: its products and everything listing it.
    #[invalidates(entity = "product", all)]
    #[invalidates(entity = "product_list", tags = ["category:{category}"])]
    pub async fn reprice(&self, category: u32, percent: i32) -> Result<u64, DbError> {
        self.db.reprice(category, percent).await
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
