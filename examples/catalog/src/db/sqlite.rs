//! The embedded backend: one SQLite file, a few connections used on blocking threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, Deleted, NewProduct, PAGE_SIZE, PRODUCTS, Product, first_version};

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        Self(error.to_string())
    }
}

#[derive(Clone)]
pub(super) struct Sqlite {
    connections: Arc<[Mutex<Connection>]>,
    next: Arc<AtomicUsize>,
}

impl Sqlite {
    pub(super) fn create(path: &std::path::Path, connections: usize) -> Result<Self, DbError> {
        let _ = std::fs::remove_file(path);
        let mut first = Connection::open(path)?;
        first.pragma_update(None, "journal_mode", "WAL")?;
        first.pragma_update(None, "synchronous", "NORMAL")?;
        first.execute_batch(
            "CREATE TABLE products (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, category INTEGER NOT NULL, name TEXT NOT NULL,
                 description TEXT NOT NULL, price_cents INTEGER NOT NULL, version INTEGER NOT NULL);
             CREATE INDEX products_by_category ON products (category, id);",
        )?;
        let tx = first.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO products (id, category, name, description, price_cents, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let version = first_version();
            for p in (0..PRODUCTS).map(|id| Product::seed(id, version)) {
                insert.execute(params![
                    p.id,
                    p.category,
                    p.name,
                    p.description,
                    p.price_cents,
                    p.version
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
        })
    }

    /// Runs `query` on a connection, on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, DbError> {
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

    pub(super) async fn product(&self, id: u64) -> Result<Option<Product>, DbError> {
        self.run(move |c| {
            c.prepare_cached(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE id = ?1"
            ))?
            .query_row([id], product)
            .optional()
        })
        .await
    }

    /// The products among `ids` (a JSON array of them is the one parameter).
    pub(super) async fn products(&self, ids: &[u64]) -> Result<Vec<Product>, DbError> {
        let ids = format!(
            "[{}]",
            ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        );
        self.run(move |c| {
            let mut statement = c.prepare_cached(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE id IN (SELECT value FROM json_each(?1))"
            ))?;
            let rows = statement.query_map([ids], product)?;
            rows.collect()
        })
        .await
    }

    pub(super) async fn listing(&self, category: u32, page: u32) -> Result<Vec<Product>, DbError> {
        self.run(move |c| {
            let mut statement = c.prepare_cached(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE category = ?1 ORDER BY id LIMIT ?2 OFFSET ?3"
            ))?;
            let rows =
                statement.query_map(params![category, PAGE_SIZE, page * PAGE_SIZE], product)?;
            rows.collect()
        })
        .await
    }

    /// Products of `category` with `word` in their name, in id order.
    pub(super) async fn having_word(
        &self,
        category: u32,
        word: &str,
    ) -> Result<Vec<Product>, DbError> {
        let padded = format!(" {word} ");
        self.run(move |c| {
            let mut statement = c.prepare_cached(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products
                 WHERE category = ?1 AND instr(' ' || lower(name) || ' ', ?2) > 0 ORDER BY id"
            ))?;
            let rows = statement.query_map(params![category, padded], product)?;
            rows.collect()
        })
        .await
    }

    /// Every price of `category`, ascending.
    pub(super) async fn prices(&self, category: u32) -> Result<Vec<u32>, DbError> {
        self.run(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT price_cents FROM products WHERE category = ?1 ORDER BY price_cents",
            )?;
            let prices = statement.query_map([category], |row| row.get(0))?;
            prices.collect()
        })
        .await
    }

    pub(super) async fn set_price(
        &self,
        id: u64,
        price_cents: u32,
    ) -> Result<Option<Product>, DbError> {
        self.run(move |c| {
            c.prepare_cached(concat!(
                "UPDATE products SET price_cents = ?2, version = version + 1 WHERE id = ?1
                 RETURNING ",
                product_columns!()
            ))?
            .query_row(params![id, price_cents], product)
            .optional()
        })
        .await
    }

    pub(super) async fn insert(&self, new: &NewProduct) -> Result<Product, DbError> {
        let new = new.clone();
        self.run(move |c| {
            c.prepare_cached(concat!(
                "INSERT INTO products (category, name, description, price_cents, version)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING ",
                product_columns!()
            ))?
            .query_row(
                params![
                    new.category,
                    new.name,
                    new.description,
                    new.price_cents,
                    first_version()
                ],
                product,
            )
        })
        .await
    }

    pub(super) async fn reprice(
        &self,
        category: u32,
        percent: i32,
    ) -> Result<Vec<Product>, DbError> {
        self.run(move |c| {
            let mut statement = c.prepare_cached(concat!(
                "UPDATE products SET price_cents = MAX(1, price_cents * (100 + ?2) / 100),
                 version = version + 1 WHERE category = ?1 RETURNING ",
                product_columns!()
            ))?;
            let rows = statement.query_map(params![category, percent], product)?;
            rows.collect()
        })
        .await
    }

    pub(super) async fn delete(&self, id: u64) -> Result<Option<Deleted>, DbError> {
        self.run(move |c| {
            c.query_row(
                "DELETE FROM products WHERE id = ?1 RETURNING category, version",
                [id],
                |row| {
                    Ok(Deleted {
                        category: row.get(0)?,
                        version: row.get(1)?,
                    })
                },
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
