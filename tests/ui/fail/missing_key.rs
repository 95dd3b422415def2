use cache_runtime::{cache_put, cached};

#[cached(entity = "product")]
async fn product(id: u64) -> u64 {
    id
}

#[cache_put(entity = "product")]
async fn save(id: u64) -> u64 {
    id
}

fn main() {}
