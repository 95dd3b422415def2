use cache_runtime::cached;

#[cached(entity = product, key = "{id}", version = "4", condition, crate = "cache_runtime")]
async fn product(id: u64) -> u64 {
    id
}

fn main() {}
