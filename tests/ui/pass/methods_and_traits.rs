#![deny(warnings, clippy::all)]

use cache_runtime::{cache_put, cached, invalidates};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug)]
pub struct DbError;

pub struct Repo {
    pub pool: Vec<u64>,
}

trait Catalog {
    async fn price(&self, id: u64) -> Result<u64, DbError>;
}

impl Catalog for Repo {
    #[cached(entity = "price", ttl = "short", key = "{id}", early_refresh = 1.5, stale = "1m")]
    async fn price(&self, id: u64) -> Result<u64, DbError> {
        self.pool.get(id as usize).copied().ok_or(DbError)
    }
}

impl Repo {
    #[cached(entity = "generic", key = "{id}")]
    pub async fn generic<T>(&self, id: u64) -> Result<T, DbError>
    where
        T: From<u64> + Serialize + DeserializeOwned,
    {
        Ok(T::from(id + self.pool.len() as u64))
    }

    #[cached(entity = "label", key = "{id}:{self.pool.len()}")]
    pub async fn label(&self, id: u64, prefix: impl AsRef<str> + Send) -> String {
        format!("{}{id}", prefix.as_ref())
    }

    #[invalidates(entity = "price", key = "{id}")]
    pub async fn set_price(&mut self, id: u64, price: u64) -> Result<(), DbError> {
        let slot = self.pool.get_mut(id as usize).ok_or(DbError)?;
        *slot = price;
        Ok(())
    }

    #[cache_put(entity = "price", key = "{id}")]
    pub async fn reprice(&mut self, id: u64) -> u64 {
        self.pool.push(id);
        id
    }

    #[invalidates(entity = "label", all)]
    pub async fn clear(&self) {}
}

mod reexport {
    pub use cache_runtime as cache;
}

#[cached(entity = "rexported", key = "{id}", crate = crate::reexport::cache)]
pub async fn through_reexport(id: u32) -> u32 {
    id
}

fn main() {}
