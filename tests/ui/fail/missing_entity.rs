use cache_runtime::cached;

#[cached(ttl = "short", key = "{id}")]
async fn product(id: u64) -> u64 {
    id
}

fn main() {}
