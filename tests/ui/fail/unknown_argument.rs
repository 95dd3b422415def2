use cache_runtime::{cached, invalidates};

#[cached(entity = "product", key = "{id}", expire = "5m")]
async fn product(id: u64) -> u64 {
    id
}

#[invalidates(entity = "product", key = "{id}", ttl = "5m")]
async fn update(id: u64) {
    let _ = id;
}

fn main() {}
