use cache_runtime::cached;

#[cached(entity = "product", ttl = "short", ttl = "long", key = "{id}")]
async fn product(id: u64) -> u64 {
    id
}

fn main() {}
