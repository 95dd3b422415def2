use std::cell::Cell;
use std::rc::Rc;

use cache_runtime::cached;

// Refreshes would run in a background task, which needs a `Send` body.
#[cached(entity = "counter", key = "{id}", stale = "1m")]
pub async fn counter(id: u64) -> Result<u64, String> {
    let count = Rc::new(Cell::new(id));
    tokio::task::yield_now().await;
    Ok(count.get())
}

// `refresh_in_caller` without anything to refresh.
#[cached(entity = "plain", key = "{id}", refresh_in_caller)]
pub async fn plain(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
