use cache_runtime::cached;

#[cached(entity = "country", key = "{code}", load_timeout = "2s")]
async fn country(code: &str) -> Option<String> {
    Some(code.to_owned())
}

#[derive(Debug)]
struct NoConversion;

#[cached(entity = "rate", key = "{id}", load_timeout = "2s")]
async fn rate(id: u32) -> Result<u32, NoConversion> {
    Ok(id)
}

fn main() {}
