#![deny(warnings, clippy::all)]

use cache_runtime::{cache_put, cached, invalidates};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Country {
    pub code: String,
}

#[derive(Debug)]
pub struct DbError;

impl From<cache_runtime::LoadTimedOut> for DbError {
    fn from(_: cache_runtime::LoadTimedOut) -> Self {
        DbError
    }
}

#[cached(entity = "country", ttl = "long", key = "{code}", cache_none = "30s")]
pub async fn country(code: &str) -> Option<Country> {
    Some(Country { code: code.to_owned() })
}

#[cached(entity = "rate", ttl = "90s", key = "{from}:{to}", variant = "v{precision}", local, load_timeout = "2s", stale = "10m")]
pub async fn rate(from: &str, to: &str, precision: u8) -> Result<f64, DbError> {
    let _ = (from, to, precision);
    Ok(1.0)
}

#[cached(entity = "total", key = "all", version = 3, stale = "5m", early_refresh, refresh_timeout = "200ms")]
pub async fn total_owned(region: String) -> Result<u64, DbError> {
    Ok(region.len() as u64)
}

#[cached(entity = "total_plain", key = "all", stale = "5m")]
pub async fn total() -> u64 {
    42
}

#[cached(entity = "search", ttl = "short", key = "{q.to_lowercase()}", condition = q.len() > 2)]
pub async fn search(q: &str) -> Vec<String> {
    vec![q.to_owned()]
}

#[invalidates(entity = "country", key = "{code}", before)]
#[invalidates(entity = "rate", all)]
pub async fn reload(code: &str) -> Result<(), DbError> {
    let _ = code;
    Ok(())
}

#[cache_put(entity = "country", ttl = "long", key = "{c.code}", stale = "1h")]
pub async fn save(c: Country) -> Option<Country> {
    Some(c)
}

fn main() {}
