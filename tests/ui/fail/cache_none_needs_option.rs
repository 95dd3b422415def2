use cache_runtime::cached;

#[cached(entity = "product", key = "{id}", cache_none)]
async fn product(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
