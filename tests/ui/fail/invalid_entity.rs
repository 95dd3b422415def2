use cache_runtime::cached;

#[cached(entity = "Product:List", key = "{id}")]
async fn product(id: u64) -> u64 {
    id
}

fn main() {}
