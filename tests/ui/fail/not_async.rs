use cache_runtime::cached;

#[cached(entity = "product", key = "{id}")]
fn product(id: u64) -> u64 {
    id
}

fn main() {}
