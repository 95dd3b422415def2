//! The embedded database: SQLite, seeded at start, reached through a few connections on
//! blocking threads. Every query is counted (reads and writes apart), so the demo can show what
//! the cache saves.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub const PRODUCTS: u64 = 50_000;
pub const CATEGORIES: u32 = 200;
pub const PAGE_SIZE: u32 = 20;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub id: u64,
    pub name: String,
    pub price_cents: u32,
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

/// What a price change returns: the product as written, and its position in its category's
/// listing (which page shows the old price).
#[derive(Debug, Clone, PartialEq)]
pub struct PriceChange {
    pub product: Product,
    pub position: u32,
}

impl PriceChange {
    /// The listing page (from 0) the product is on.
    pub fn page(&self) -> u32 {
        self.position / PAGE_SIZE
    }
}

/// A database error, as the service reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbError(pub String);

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        Self(error.to_string())
    }
}

/// A small pool of connections to one database file.
#[derive(Clone)]
pub struct Db {
    connections: Arc<[Mutex<Connection>]>,
    next: Arc<AtomicUsize>,
    reads: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

/// Which counter a query goes to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Read,
    Write,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    /// Creates and seeds the database at `path` (replacing it), opened `connections` times.
    pub fn create(path: &std::path::Path, connections: usize) -> Result<Self, DbError> {
        let _ = std::fs::remove_file(path);
        let mut first = Connection::open(path)?;
        first.pragma_update(None, "journal_mode", "WAL")?;
        first.pragma_update(None, "synchronous", "NORMAL")?;
        first.execute_batch(
            "CREATE TABLE products (
                 id INTEGER PRIMARY KEY, category INTEGER NOT NULL, name TEXT NOT NULL,
                 description TEXT NOT NULL, price_cents INTEGER NOT NULL, version INTEGER NOT NULL);
             CREATE INDEX products_by_category ON products (category, id);",
        )?;
        let tx = first.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO products (id, category, name, description, price_cents, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1)",
            )?;
            for id in 0..PRODUCTS {
                let category = u32::try_from(id % u64::from(CATEGORIES)).unwrap_or(0);
                let price = 500 + u32::try_from(id * 7919 % 100_000).unwrap_or(0);
                insert.execute(params![
                    id,
                    category,
                    // Every word occurs in every category (searches differ by category).
                    format!(
                        "{} lamp no. {id}",
                        ADJECTIVES[(id / u64::from(CATEGORIES)) as usize % ADJECTIVES.len()]
                    ),
                    "A warm-white LED desk lamp with a weighted base. ".repeat(6),
                    price,
                ])?;
            }
        }
        tx.commit()?;
        let mut all = vec![Mutex::new(first)];
        for _ in 1..connections.max(1) {
            all.push(Mutex::new(Connection::open(path)?));
        }
        Ok(Self {
            connections: all.into(),
            next: Arc::default(),
            reads: Arc::default(),
            writes: Arc::default(),
        })
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

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, DbError> {
        self.run(Kind::Read, query).await
    }

    async fn write<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, DbError> {
        self.run(Kind::Write, query).await
    }

    /// Runs `query` on a connection, on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        kind: Kind,
        query: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, DbError> {
        match kind {
            Kind::Read => &self.reads,
            Kind::Write => &self.writes,
        }
        .fetch_add(1, Ordering::Relaxed);
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let connections = self.connections.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connections[index]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            query(&mut connection).map_err(DbError::from)
        })
        .await
        .map_err(|e| DbError(e.to_string()))?
    }

    pub async fn product(&self, id: u64) -> Result<Option<Product>, DbError> {
        self.read(move |c| {
            c.query_row(
                "SELECT id, category, name, description, price_cents, version FROM products WHERE id = ?1",
                [id],
                product,
            )
            .optional()
        })
        .await
    }

    pub async fn listing(&self, category: u32, page: u32) -> Result<Vec<Summary>, DbError> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT id, name, price_cents FROM products WHERE category = ?1
                 ORDER BY id LIMIT ?2 OFFSET ?3",
            )?;
            let rows =
                statement.query_map(params![category, PAGE_SIZE, page * PAGE_SIZE], summary)?;
            rows.collect()
        })
        .await
    }

    /// Products of `category` whose name has every one of `words` (lowercase) as a word,
    /// cheapest first, at most 50.
    pub async fn search(&self, category: u32, words: Vec<String>) -> Result<Vec<Summary>, DbError> {
        self.read(move |c| {
            let Some(first) = words.first() else {
                return Ok(Vec::new());
            };
            let mut statement = c.prepare_cached(
                "SELECT id, name, price_cents FROM products
                 WHERE category = ?1 AND instr(' ' || lower(name) || ' ', ?2) > 0
                 ORDER BY price_cents",
            )?;
            let rows = statement.query_map(params![category, format!(" {first} ")], summary)?;
            let mut found = Vec::new();
            for row in rows {
                let row = row?;
                let name = format!(" {} ", row.name.to_lowercase());
                if words.iter().all(|w| name.contains(&format!(" {w} "))) {
                    found.push(row);
                    if found.len() == 50 {
                        break;
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    /// The expensive read: every price of a category, sorted for the median.
    pub async fn price_stats(&self, category: u32) -> Result<PriceStats, DbError> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT price_cents FROM products WHERE category = ?1 ORDER BY price_cents",
            )?;
            let prices: Vec<u32> = statement
                .query_map([category], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            let total: u64 = prices.iter().map(|p| u64::from(*p)).sum();
            Ok(PriceStats {
                category,
                products: prices.len() as u64,
                min_cents: prices.first().copied().unwrap_or(0),
                max_cents: prices.last().copied().unwrap_or(0),
                mean_cents: total as f64 / prices.len().max(1) as f64,
                median_cents: prices.get(prices.len() / 2).copied().unwrap_or(0),
            })
        })
        .await
    }

    /// Sets a price, in one statement that also returns the product as written and its
    /// position in its category's listing; `None` for an unknown product.
    pub async fn set_price(
        &self,
        id: u64,
        price_cents: u32,
    ) -> Result<Option<PriceChange>, DbError> {
        self.write(move |c| {
            c.query_row(
                "UPDATE products SET price_cents = ?2, version = version + 1 WHERE id = ?1
                 RETURNING id, category, name, description, price_cents, version,
                     (SELECT COUNT(*) FROM products AS earlier
                      WHERE earlier.category = products.category AND earlier.id < products.id)",
                params![id, price_cents],
                |row| {
                    Ok(PriceChange {
                        product: product(row)?,
                        position: row.get(6)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// Moves every price of a category by `percent`; returns how many changed.
    pub async fn reprice(&self, category: u32, percent: i32) -> Result<u64, DbError> {
        self.write(move |c| {
            let changed = c.execute(
                "UPDATE products SET price_cents = MAX(1, price_cents * (100 + ?2) / 100),
                 version = version + 1 WHERE category = ?1",
                params![category, percent],
            )?;
            Ok(changed as u64)
        })
        .await
    }

    /// Deletes a product; returns its category, or `None` for an unknown product.
    pub async fn delete(&self, id: u64) -> Result<Option<u32>, DbError> {
        self.write(move |c| {
            c.query_row(
                "DELETE FROM products WHERE id = ?1 RETURNING category",
                [id],
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }
}

fn product(row: &rusqlite::Row<'_>) -> Result<Product, rusqlite::Error> {
    Ok(Product {
        id: row.get(0)?,
        category: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        price_cents: row.get(4)?,
        version: row.get(5)?,
    })
}

fn summary(row: &rusqlite::Row<'_>) -> Result<Summary, rusqlite::Error> {
    Ok(Summary {
        id: row.get(0)?,
        name: row.get(1)?,
        price_cents: row.get(2)?,
    })
}

/// Words the names are made of, for searches.
pub const ADJECTIVES: [&str; 8] = [
    "brass", "walnut", "matte", "folding", "clamp", "tall", "mini", "smart",
];
