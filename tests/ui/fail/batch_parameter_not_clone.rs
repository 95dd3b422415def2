use std::collections::HashMap;

use cache_runtime::cached;

/// Not `Clone`: a batch body may run twice, each run with its own copy of the other inputs.
struct Connection;

#[cached(entity = "product", ttl = "medium", key = "{id}", batch)]
async fn names(ids: &[u64], connection: Connection) -> HashMap<u64, String> {
    let _connection = connection;
    ids.iter().map(|id| (*id, id.to_string())).collect()
}

fn main() {}
