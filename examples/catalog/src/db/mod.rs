//! The database: SQLite embedded by default (seeded at start), PostgreSQL when the service is
//! given a `postgres://` URL. Both hold the same seeded catalog and answer the same queries;
//! every query is counted (reads and writes apart), so the demo can show what the cache saves.

/// A product's columns, in the order both backends read them.
macro_rules! product_columns {
    () => {
        "id, category, name, description, price_cents, version"
    };
}

mod postgres;
mod sqlite;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub const PRODUCTS: u64 = 50_000;
pub const CATEGORIES: u32 = 200;
pub const PAGE_SIZE: u32 = 20;
/// At most this many products per search.
pub const SEARCH_LIMIT: usize = 50;

/// Words the names are made of, for searches.
pub const ADJECTIVES: [&str; 8] = [
    "brass", "walnut", "matte", "folding", "clamp", "tall", "mini", "smart",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub category: u32,
    pub name: String,
    pub description: String,
    pub price_cents: u32,
    /// Bumped by every write: a read that returns an older version than the last committed
    /// write is stale.
    pub version: u64,
}

/// A new row's first version: when it is written, in microseconds since the Unix epoch. Every
/// change adds 1. Starting from the time keeps versions rising across databases seeded anew at
/// each start, which matters because the cache orders writes by version (`#[cache_put(revision
/// = …)]`) and may still hold an earlier run's revisions: a version that went back would be
/// refused as older.
pub fn first_version() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

impl Product {
    /// The seeded product `id`, at `version`.
    fn seed(id: u64, version: u64) -> Self {
        let round = (id / u64::from(CATEGORIES)) as usize;
        Self {
            id,
            category: (id % u64::from(CATEGORIES)) as u32,
            // Every word occurs in every category (searches differ by category).
            name: format!("{} lamp no. {id}", ADJECTIVES[round % ADJECTIVES.len()]),
            description: "A warm-white LED desk lamp with a weighted base. ".repeat(6),
            price_cents: 500 + (id * 7919 % 100_000) as u32,
            version,
        }
    }
}

/// A product to add: everything but its id and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewProduct {
    pub category: u32,
    pub name: String,
    pub description: String,
    pub price_cents: u32,
}

/// A product as listings and searches show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub id: u64,
    pub name: String,
    pub price_cents: u32,
}

impl From<&Product> for Summary {
    fn from(product: &Product) -> Self {
        Self {
            id: product.id,
            name: product.name.clone(),
            price_cents: product.price_cents,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceStats {
    pub category: u32,
    pub products: u64,
    pub min_cents: u32,
    pub max_cents: u32,
    pub mean_cents: f64,
    pub median_cents: u32,
}

impl PriceStats {
    fn of_sorted(category: u32, prices: &[u32]) -> Self {
        let total: u64 = prices.iter().map(|p| u64::from(*p)).sum();
        Self {
            category,
            products: prices.len() as u64,
            min_cents: prices.first().copied().unwrap_or(0),
            max_cents: prices.last().copied().unwrap_or(0),
            mean_cents: total as f64 / prices.len().max(1) as f64,
            median_cents: prices.get(prices.len() / 2).copied().unwrap_or(0),
        }
    }
}

/// What a delete removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub category: u32,
    /// The row's last version.
    pub version: u64,
}

/// A database error, as the service reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbError(pub String);

/// `url` with the password of its user info, if any, replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Of `candidates` (in catalog order, all holding the first word), those whose name has every
/// one of `words` as a word, at most [`SEARCH_LIMIT`].
fn matching(candidates: Vec<Product>, words: &[String]) -> Vec<Product> {
    candidates
        .into_iter()
        .filter(|p| {
            let name = format!(" {} ", p.name.to_lowercase());
            words.iter().all(|w| name.contains(&format!(" {w} ")))
        })
        .take(SEARCH_LIMIT)
        .collect()
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// The catalog's database, with its query counters.
#[derive(Clone)]
pub struct Db {
    backend: Backend,
    reads: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

/// Runs the same call on whichever backend `db` has, counting it as `$counter`.
macro_rules! on_backend {
    ($db:expr, $counter:ident, |$store:ident| $call:expr) => {{
        $db.$counter.fetch_add(1, Ordering::Relaxed);
        match &$db.backend {
            Backend::Sqlite($store) => $call.await,
            Backend::Postgres($store) => $call.await,
        }
    }};
}

impl Db {
    /// A new SQLite database at `path` (replacing the file), seeded, opened `connections`
    /// times.
    pub fn create(path: &std::path::Path, connections: usize) -> Result<Self, DbError> {
        Ok(Self::with(Backend::Sqlite(sqlite::Sqlite::create(
            path,
            connections,
        )?)))
    }

    /// The PostgreSQL database at `url`, in its own `schema` (`[a-z0-9_]`; created, and its
    /// `products` table replaced and seeded), over `connections` connections. Nothing outside
    /// the schema is touched.
    pub async fn create_postgres(
        url: &str,
        schema: &str,
        connections: usize,
    ) -> Result<Self, DbError> {
        Ok(Self::with(Backend::Postgres(
            postgres::Postgres::create(url, schema, connections).await?,
        )))
    }

    /// PostgreSQL when `DATABASE_URL` is set (schema `catalog_demo`), else SQLite at
    /// `sqlite_path`; with a line saying which, the password left out.
    pub async fn from_env(
        sqlite_path: &std::path::Path,
        connections: usize,
    ) -> Result<(Self, String), DbError> {
        let started = std::time::Instant::now();
        let seeded = format!("{PRODUCTS} products in {CATEGORIES} categories");
        match std::env::var("DATABASE_URL") {
            Ok(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let db = Self::create_postgres(&url, "catalog_demo", connections).await?;
                Ok((
                    db,
                    format!(
                        "PostgreSQL at {}, schema catalog_demo (replaced at each start): {seeded}, seeded in {:.1?}",
                        without_password(&url),
                        started.elapsed()
                    ),
                ))
            }
            Ok(url) => Err(DbError(format!(
                "DATABASE_URL={}: only postgres:// URLs are supported (unset it for the embedded SQLite)",
                without_password(&url)
            ))),
            Err(_) => {
                let db = Self::create(sqlite_path, connections)?;
                Ok((
                    db,
                    format!(
                        "SQLite at {}: {seeded}, seeded in {:.1?}",
                        sqlite_path.display(),
                        started.elapsed()
                    ),
                ))
            }
        }
    }

    fn with(backend: Backend) -> Self {
        Self {
            backend,
            reads: Arc::default(),
            writes: Arc::default(),
        }
    }

    /// Queries run so far, reads and writes.
    pub fn queries(&self) -> u64 {
        self.reads() + self.writes()
    }

    /// Reading queries run so far: what a cache can save.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Writing queries run so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub async fn product(&self, id: u64) -> Result<Option<Product>, DbError> {
        on_backend!(self, reads, |store| store.product(id))
    }

    /// The products `ids` names that exist, in one query (in no particular order).
    pub async fn products(&self, ids: Vec<u64>) -> Result<Vec<Product>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self, reads, |store| store.products(&ids))
    }

    /// One page of a category, in catalog (id) order.
    pub async fn listing(&self, category: u32, page: u32) -> Result<Vec<Product>, DbError> {
        on_backend!(self, reads, |store| store.listing(category, page))
    }

    /// The products of `category` whose name has every one of `words` (lowercase, at least
    /// one) as a word, in catalog order, at most [`SEARCH_LIMIT`].
    pub async fn search(&self, category: u32, words: Vec<String>) -> Result<Vec<Product>, DbError> {
        let Some(first) = words.first().cloned() else {
            return Ok(Vec::new());
        };
        let candidates: Vec<Product> =
            on_backend!(self, reads, |store| store.having_word(category, &first))?;
        Ok(matching(candidates, &words))
    }

    /// The expensive read: every price of a category, sorted for the median.
    pub async fn price_stats(&self, category: u32) -> Result<PriceStats, DbError> {
        let prices: Vec<u32> = on_backend!(self, reads, |store| store.prices(category))?;
        Ok(PriceStats::of_sorted(category, &prices))
    }

    /// Sets a price, in one statement that also returns the product as written; `None` for an
    /// unknown product.
    pub async fn set_price(&self, id: u64, price_cents: u32) -> Result<Option<Product>, DbError> {
        on_backend!(self, writes, |store| store.set_price(id, price_cents))
    }

    /// Adds a product (the next id, [`first_version`]), in one statement that also returns it.
    pub async fn insert(&self, new: NewProduct) -> Result<Product, DbError> {
        on_backend!(self, writes, |store| store.insert(&new))
    }

    /// Moves every price of a category by `percent`, in one statement that also returns the
    /// products as written.
    pub async fn reprice(&self, category: u32, percent: i32) -> Result<Vec<Product>, DbError> {
        on_backend!(self, writes, |store| store.reprice(category, percent))
    }

    /// Deletes a product; `None` for an unknown product.
    pub async fn delete(&self, id: u64) -> Result<Option<Deleted>, DbError> {
        on_backend!(self, writes, |store| store.delete(id))
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            without_password("postgres://shop:s3cret@db:5432/catalog"),
            "postgres://shop:***@db:5432/catalog"
        );
        assert_eq!(
            without_password("postgres://db/catalog"),
            "postgres://db/catalog"
        );
        assert_eq!(without_password("postgres://shop@db"), "postgres://shop@db");
    }
}
