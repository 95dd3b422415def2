use cache_runtime::cached;

#[cached(entity = "price", key = "{id}", stale = "short", early_refresh = -1, refresh_timeout = "soon")]
async fn price(id: u64) -> u64 {
    id
}

fn main() {}
