//! The PostgreSQL backend: a few pipelined connections, statements prepared once on each, the
//! catalog in its own schema.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_postgres::{Client, NoTls, Row, Statement};

use super::{DbError, PAGE_SIZE, PRODUCTS, PriceChange, Product, Summary};

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self(error.to_string())
    }
}

fn out_of_range(what: &str) -> DbError {
    DbError(format!("{what} out of range"))
}

struct Connection {
    client: Client,
    product: Statement,
    listing: Statement,
    having_word: Statement,
    prices: Statement,
    set_price: Statement,
    reprice: Statement,
    delete: Statement,
}

#[derive(Clone)]
pub(super) struct Postgres {
    connections: Arc<[Connection]>,
    next: Arc<AtomicUsize>,
}

impl Postgres {
    pub(super) async fn create(
        url: &str,
        schema: &str,
        connections: usize,
    ) -> Result<Self, DbError> {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(DbError(format!(
                "schema {schema:?}: use 1 to 63 of [a-z0-9_], not starting with a digit"
            )));
        }
        let first = connect(url, schema).await?;
        first
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 DROP TABLE IF EXISTS {schema}.products;
                 CREATE TABLE {schema}.products (
                     id BIGINT PRIMARY KEY, category INTEGER NOT NULL, name TEXT NOT NULL,
                     description TEXT NOT NULL, price_cents INTEGER NOT NULL,
                     version BIGINT NOT NULL);
                 CREATE INDEX products_by_category ON {schema}.products (category, id);"
            ))
            .await?;
        seed(&first).await?;
        let mut all = vec![prepare(first).await?];
        for _ in 1..connections.max(1) {
            all.push(prepare(connect(url, schema).await?).await?);
        }
        Ok(Self {
            connections: all.into(),
            next: Arc::default(),
        })
    }

    fn connection(&self) -> &Connection {
        &self.connections[self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len()]
    }

    pub(super) async fn product(&self, id: u64) -> Result<Option<Product>, DbError> {
        let c = self.connection();
        let id = i64::try_from(id).map_err(|_| out_of_range("id"))?;
        c.client
            .query_opt(&c.product, &[&id])
            .await?
            .map(|row| product(&row))
            .transpose()
    }

    pub(super) async fn listing(&self, category: u32, page: u32) -> Result<Vec<Summary>, DbError> {
        let c = self.connection();
        let category = int4(category)?;
        let limit = i64::from(PAGE_SIZE);
        let offset = i64::from(page) * limit;
        let rows = c
            .client
            .query(&c.listing, &[&category, &limit, &offset])
            .await?;
        rows.iter().map(summary).collect()
    }

    pub(super) async fn having_word(
        &self,
        category: u32,
        word: &str,
    ) -> Result<Vec<Summary>, DbError> {
        let c = self.connection();
        let category = int4(category)?;
        let padded = format!(" {word} ");
        let rows = c
            .client
            .query(&c.having_word, &[&category, &padded])
            .await?;
        rows.iter().map(summary).collect()
    }

    pub(super) async fn prices(&self, category: u32) -> Result<Vec<u32>, DbError> {
        let c = self.connection();
        let rows = c.client.query(&c.prices, &[&int4(category)?]).await?;
        rows.iter()
            .map(|row| uint(row.try_get::<_, i32>(0)?))
            .collect()
    }

    pub(super) async fn set_price(
        &self,
        id: u64,
        price_cents: u32,
    ) -> Result<Option<PriceChange>, DbError> {
        let c = self.connection();
        let id = i64::try_from(id).map_err(|_| out_of_range("id"))?;
        let Some(row) = c
            .client
            .query_opt(&c.set_price, &[&id, &int4(price_cents)?])
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(PriceChange {
            product: product(&row)?,
            position: uint(row.try_get::<_, i64>(6)?)?,
        }))
    }

    pub(super) async fn reprice(&self, category: u32, percent: i32) -> Result<u64, DbError> {
        let c = self.connection();
        Ok(c.client
            .execute(&c.reprice, &[&int4(category)?, &percent])
            .await?)
    }

    pub(super) async fn delete(&self, id: u64) -> Result<Option<u32>, DbError> {
        let c = self.connection();
        let id = i64::try_from(id).map_err(|_| out_of_range("id"))?;
        c.client
            .query_opt(&c.delete, &[&id])
            .await?
            .map(|row| uint(row.try_get::<_, i32>(0)?))
            .transpose()
    }
}

async fn connect(url: &str, schema: &str) -> Result<Client, DbError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection closed");
        }
    });
    client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .await?;
    Ok(client)
}

/// The same catalog as the SQLite backend's, in one statement.
async fn seed(client: &Client) -> Result<(), DbError> {
    let products: Vec<Product> = (0..PRODUCTS).map(Product::seed).collect();
    let ids: Vec<i64> = products.iter().map(|p| p.id as i64).collect();
    let categories: Vec<i32> = products.iter().map(|p| p.category as i32).collect();
    let names: Vec<&str> = products.iter().map(|p| p.name.as_str()).collect();
    let descriptions: Vec<&str> = products.iter().map(|p| p.description.as_str()).collect();
    let prices: Vec<i32> = products.iter().map(|p| p.price_cents as i32).collect();
    let versions: Vec<i64> = products.iter().map(|p| p.version as i64).collect();
    client
        .execute(
            "INSERT INTO products (id, category, name, description, price_cents, version)
             SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[], $5::int4[],
                                  $6::int8[])",
            &[&ids, &categories, &names, &descriptions, &prices, &versions],
        )
        .await?;
    Ok(())
}

async fn prepare(client: Client) -> Result<Connection, DbError> {
    Ok(Connection {
        product: client
            .prepare(
                "SELECT id, category, name, description, price_cents, version FROM products
                 WHERE id = $1",
            )
            .await?,
        listing: client
            .prepare(
                "SELECT id, name, price_cents FROM products WHERE category = $1
                 ORDER BY id LIMIT $2 OFFSET $3",
            )
            .await?,
        having_word: client
            .prepare(
                "SELECT id, name, price_cents FROM products
                 WHERE category = $1 AND strpos(' ' || lower(name) || ' ', $2) > 0
                 ORDER BY price_cents",
            )
            .await?,
        prices: client
            .prepare("SELECT price_cents FROM products WHERE category = $1 ORDER BY price_cents")
            .await?,
        set_price: client
            .prepare(
                "UPDATE products SET price_cents = $2, version = version + 1 WHERE id = $1
                 RETURNING id, category, name, description, price_cents, version,
                     (SELECT COUNT(*) FROM products AS earlier
                      WHERE earlier.category = products.category AND earlier.id < products.id)",
            )
            .await?,
        reprice: client
            .prepare(
                "UPDATE products SET price_cents = GREATEST(1, price_cents * (100 + $2) / 100),
                 version = version + 1 WHERE category = $1",
            )
            .await?,
        delete: client
            .prepare("DELETE FROM products WHERE id = $1 RETURNING category")
            .await?,
        client,
    })
}

fn int4(value: u32) -> Result<i32, DbError> {
    i32::try_from(value).map_err(|_| out_of_range("value"))
}

fn uint<T: TryInto<U>, U>(value: T) -> Result<U, DbError> {
    value.try_into().map_err(|_| out_of_range("column"))
}

fn product(row: &Row) -> Result<Product, DbError> {
    Ok(Product {
        id: uint(row.try_get::<_, i64>(0)?)?,
        category: uint(row.try_get::<_, i32>(1)?)?,
        name: row.try_get(2)?,
        description: row.try_get(3)?,
        price_cents: uint(row.try_get::<_, i32>(4)?)?,
        version: uint(row.try_get::<_, i64>(5)?)?,
    })
}

fn summary(row: &Row) -> Result<Summary, DbError> {
    Ok(Summary {
        id: uint(row.try_get::<_, i64>(0)?)?,
        name: row.try_get(1)?,
        price_cents: uint(row.try_get::<_, i32>(2)?)?,
    })
}
