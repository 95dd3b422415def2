use std::collections::HashMap;

use cache_runtime::cached;

#[derive(Debug)]
struct DbError;

/// No parameter holds ids.
#[cached(entity = "product", ttl = "medium", key = "{id}", batch)]
async fn no_ids(id: u64) -> Result<HashMap<u64, String>, DbError> {
    let _ = id;
    Ok(HashMap::new())
}

/// Two parameters could.
#[cached(entity = "product", ttl = "medium", key = "{id}", batch)]
async fn two_lists(ids: &[u64], others: Vec<u64>) -> HashMap<u64, String> {
    let _ = (ids, others);
    HashMap::new()
}

/// The key names the whole batch.
#[cached(entity = "product", ttl = "medium", key = "{ids}", batch)]
async fn whole_batch(ids: &[u64]) -> HashMap<u64, String> {
    let _ = ids;
    HashMap::new()
}

/// The key names no id.
#[cached(entity = "product", ttl = "medium", key = "all", batch)]
async fn no_element(ids: &[u64]) -> HashMap<u64, String> {
    let _ = ids;
    HashMap::new()
}

/// A `Vec<T>` cannot say which id lacks a value.
#[cached(entity = "product", ttl = "medium", key = "{id}", batch)]
async fn plain_vec(ids: &[u64]) -> Result<Vec<String>, DbError> {
    let _ = ids;
    Ok(Vec::new())
}

/// Every id of a batch is cached.
#[cached(entity = "product", ttl = "medium", key = "{id}", condition = ids.len() > 1, batch)]
async fn conditional(ids: &[u64]) -> HashMap<u64, String> {
    let _ = ids;
    HashMap::new()
}

/// A bound on the body is not supported with `batch`.
#[cached(entity = "product", ttl = "medium", key = "{id}", load_timeout = "2s", batch)]
async fn bounded(ids: &[u64]) -> Result<HashMap<u64, String>, DbError> {
    let _ = ids;
    Ok(HashMap::new())
}

fn main() {}
