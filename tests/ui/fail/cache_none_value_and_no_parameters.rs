use cache_runtime::cached;

#[cached(entity = "country", key = "{code}", cache_none = 30)]
async fn country(code: &str) -> Option<String> {
    Some(code.to_owned())
}

#[cached(entity = "total", key = "{id}")]
async fn total() -> u64 {
    42
}

fn main() {}
