//! One process of the multi-process batch test: waits for a go signal in Redis, then runs its
//! batches (`cache_tests::batch::ids`) concurrently. Each loader call counts the ids it loads
//! in the hash `batch:loads`, so the test can tell whether any id was loaded twice.
//!
//! `batch_client <redis-url> <process>`

use std::collections::HashMap;
use std::time::Duration;

use cache_runtime::{Cache, CacheConfig, ReadOptions, Ttl};
use cache_tests::batch;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, process] = args.as_slice() else {
        return Err("usage: batch_client <redis-url> <process>".into());
    };
    let process: u64 = process.parse()?;
    let config = CacheConfig::builder()
        .redis_url(url.as_str())
        .app_prefix("batch")
        .metrics_log_interval(None)
        .build()?;
    let cache = Cache::new(config)?;
    let products = cache.entity("product")?;
    let mut counter = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    loop {
        let go: bool = redis::cmd("EXISTS")
            .arg("batch:go")
            .query_async(&mut counter)
            .await?;
        if go {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let tasks: Vec<_> = (0..batch::PER_PROCESS)
        .map(|n| {
            let (cache, products, counter) = (cache.clone(), products.clone(), counter.clone());
            tokio::spawn(async move {
                let ids = batch::ids(process, n);
                let values = cache
                    .get_or_set_many(&products, &ids, ReadOptions::new(Ttl::Medium), |ids| {
                        let mut counter = counter.clone();
                        async move {
                            let mut count = redis::pipe();
                            for id in &ids {
                                count
                                    .cmd("HINCRBY")
                                    .arg("batch:loads")
                                    .arg(id)
                                    .arg(1)
                                    .ignore();
                            }
                            count
                                .query_async::<()>(&mut counter)
                                .await
                                .map_err(|e| e.to_string())?;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok::<_, String>(
                                ids.into_iter()
                                    .map(|id| (id, id * 10))
                                    .collect::<HashMap<_, _>>(),
                            )
                        }
                    })
                    .await
                    .map_err(|e| e.error)?;
                for (id, value) in ids.iter().zip(values) {
                    if value != Some(id * 10) {
                        return Err(format!("id {id}: {value:?}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}
