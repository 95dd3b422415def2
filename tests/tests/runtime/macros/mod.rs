//! `#[cached]`, `#[invalidates]` and `#[cache_put]` on a repository over a counting database.

mod aliases;
mod batch;
mod ordered_writes;
mod reads;
mod shapes;
mod writes;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_runtime::{KeyPart, cache_put, cached, invalidates};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub category: u32,
}

#[derive(Debug)]
pub struct ProductUpdate {
    pub name: String,
    pub category: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Name,
    Newest,
}

// Opting a user type into keys.
impl KeyPart for Sort {
    fn append_to(&self, key: &mut String) {
        key.push_str(match self {
            Self::Name => "name",
            Self::Newest => "newest",
        });
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct DbError(pub String);

/// Stands in for a database: products in memory, every query counted.
#[derive(Debug, Default)]
pub struct Db {
    products: Mutex<BTreeMap<u64, Product>>,
    queries: AtomicUsize,
}

impl Db {
    pub fn with_products(products: impl IntoIterator<Item = Product>) -> Self {
        let db = Self::default();
        db.rows().extend(products.into_iter().map(|p| (p.id, p)));
        db
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    pub fn query(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Product>> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.rows()
    }

    /// Changes a row behind the cache's back (another service, a migration).
    pub fn rows(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Product>> {
        self.products.lock().expect("db lock")
    }
}

pub fn product(id: u64, category: u32) -> Product {
    Product {
        id,
        name: format!("product {id}"),
        category,
    }
}

/// A repository holding a database handle, as services write them.
#[derive(Debug)]
pub struct Repo {
    pub db: Db,
}

impl Repo {
    #[cached(entity = "product", ttl = "medium", key = "{id}")]
    pub async fn product(&self, id: u64) -> Result<Product, DbError> {
        self.db
            .query()
            .get(&id)
            .cloned()
            .ok_or_else(|| DbError(format!("no product {id}")))
    }

    #[cached(
        entity = "product_list",
        ttl = "short",
        key = "{category}",
        variant = "p{page}:{sort}"
    )]
    pub async fn list(
        &self,
        category: u32,
        page: u32,
        sort: Sort,
    ) -> Result<Vec<Product>, DbError> {
        let mut rows: Vec<Product> = self
            .db
            .query()
            .values()
            .filter(|p| p.category == category)
            .cloned()
            .collect();
        if sort == Sort::Newest {
            rows.reverse();
        }
        Ok(rows.into_iter().skip(page as usize * 10).take(10).collect())
    }

    #[invalidates(entity = "product", key = "{id}")]
    #[invalidates(entity = "product_list", key = "{update.category}")]
    pub async fn update(&self, id: u64, update: &ProductUpdate) -> Result<(), DbError> {
        let mut rows = self.db.query();
        let row = rows
            .get_mut(&id)
            .ok_or_else(|| DbError(format!("no product {id}")))?;
        row.name.clone_from(&update.name);
        row.category = update.category;
        Ok(())
    }

    #[invalidates(entity = "product_list", all)]
    pub async fn import(&self, products: Vec<Product>) -> Result<usize, DbError> {
        let count = products.len();
        self.db
            .query()
            .extend(products.into_iter().map(|p| (p.id, p)));
        Ok(count)
    }

    #[cache_put(entity = "product", ttl = "medium", key = "{p.id}")]
    pub async fn save(&self, p: Product) -> Result<Product, DbError> {
        self.db.query().insert(p.id, p.clone());
        Ok(p)
    }
}
