//! The other process of the history checker: runs the workload of `cache_tests::history` on
//! `instances` `Cache` instances (two workers each) for `millis`, then prints its history, one
//! operation a line.
//!
//! `history_client <cache-url> <db-url> <seed> <millis> <instances>`

use std::sync::{Arc, Mutex};

use cache_runtime::Cache;
use cache_tests::history::{self, Db};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, db_url, seed, millis, instances] = args.as_slice() else {
        return Err(
            "usage: history_client <cache-url> <db-url> <seed> <millis> <instances>".into(),
        );
    };
    let seed: u64 = seed.parse()?;
    let until = history::now_us() + millis.parse::<u64>()? * 1000;
    let db = Db::connect(db_url).await?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for n in 0..instances.parse::<u64>()? {
        let cache = Cache::new(history::config(url))?;
        for worker in 0..2 {
            let name = format!("p{}-{n}", std::process::id());
            let seed = seed.wrapping_mul(31).wrapping_add(n * 2 + worker);
            let job =
                history::run_worker(cache.clone(), name, db.clone(), seed, until, log.clone());
            workers.push(tokio::spawn(job));
        }
    }
    for worker in workers {
        worker.await?;
    }
    let ops = log.lock().map_err(|_| "history lock poisoned")?;
    for op in ops.iter() {
        println!("{op}");
    }
    Ok(())
}
