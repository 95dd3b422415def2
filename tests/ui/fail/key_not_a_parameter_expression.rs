use cache_runtime::cached;

#[cached(entity = "product", key = "{1 + 2}")]
async fn product(id: u64) -> u64 {
    id
}

#[cached(entity = "stock", key = "{id id}")]
async fn stock(id: u64) -> u64 {
    id
}

fn main() {}
