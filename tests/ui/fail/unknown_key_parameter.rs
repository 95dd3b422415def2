use cache_runtime::cached;

#[cached(entity = "product", key = "{product_id}", variant = "p{page}")]
async fn product(id: u64, page: u32) -> u64 {
    id + u64::from(page)
}

fn main() {}
