use cache_runtime::cached;

#[cached(entity = "product", ttl = "5 minutes", key = "{id}")]
async fn product(id: u64) -> u64 {
    id
}

#[cached(entity = "stock", ttl = "0s", key = "{id}")]
async fn stock(id: u64) -> u64 {
    id
}

fn main() {}
