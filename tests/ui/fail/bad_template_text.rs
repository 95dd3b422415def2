use cache_runtime::cached;

#[cached(entity = "a", key = "all*{id}")]
async fn a(id: u64) -> u64 { id }

#[cached(entity = "b", key = "{id")]
async fn b(id: u64) -> u64 { id }

#[cached(entity = "c", key = "id}")]
async fn c(id: u64) -> u64 { id }

#[cached(entity = "d", key = "{}")]
async fn d(id: u64) -> u64 { id }

#[cached(entity = "e", key = "")]
async fn e(id: u64) -> u64 { id }

fn main() {}
