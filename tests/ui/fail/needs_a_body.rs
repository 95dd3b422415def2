use cache_runtime::cached;

trait Catalog {
    #[cached(entity = "product", key = "{id}")]
    async fn product(&self, id: u64) -> u64;
}

fn main() {}
