//! One process of the multi-process stampede tests: waits for a go signal in Redis, then makes
//! `concurrency` concurrent `get_or_set` calls on one key. Each loader call increments
//! `{key}:loader_calls` in Redis before taking `load_ms`, so the test can count them across
//! processes.
//!
//! `stampede_client <redis-url> <concurrency> <load_ms> <lease: on|off> [<signal-url>]`: the
//! go signal and the count live at `signal-url` (default: `redis-url`), a plain Redis when the
//! cache runs on a cluster.

use std::time::Duration;

use cache_runtime::{Cache, CacheConfig, Ttl};

const KEY_ID: &str = "hot";
const GO_KEY: &str = "stampede:go";
pub const LOADER_CALLS_KEY: &str = "stampede:loader_calls";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, concurrency, load_ms, lease, signal_url) = match args.as_slice() {
        [_, url, concurrency, load_ms, lease] => (url, concurrency, load_ms, lease, url),
        [_, url, concurrency, load_ms, lease, signal] => (url, concurrency, load_ms, lease, signal),
        _ => {
            return Err(
                "usage: stampede_client <redis-url> <concurrency> <load_ms> <on|off> [<signal-url>]"
                    .into(),
            );
        }
    };
    let concurrency: usize = concurrency.parse()?;
    let load = Duration::from_millis(load_ms.parse()?);
    let lease_ttl = (lease == "on").then_some(Duration::from_secs(2));
    let config = CacheConfig::builder()
        .redis_url(url.as_str())
        .app_prefix("stampede")
        .operation_timeout(Duration::from_secs(1))
        .lease_ttl(lease_ttl)
        .metrics_log_interval(None)
        .build()?;
    let cache = Cache::new(config)?;
    let key = cache.entity("product")?.key(KEY_ID);
    let mut counter = redis::Client::open(signal_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;

    // Start together with the other processes.
    loop {
        let go: bool = redis::cmd("EXISTS")
            .arg(GO_KEY)
            .query_async(&mut counter)
            .await?;
        if go {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (cache, key, mut counter) = (cache.clone(), key.clone(), counter.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set(&key, Ttl::Short, || async {
                        let _: i64 = redis::cmd("INCR")
                            .arg(LOADER_CALLS_KEY)
                            .query_async(&mut counter)
                            .await
                            .map_err(|e| e.to_string())?;
                        tokio::time::sleep(load).await;
                        Ok::<_, String>("loaded".to_owned())
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        let value = task.await??;
        if value != "loaded" {
            return Err(format!("unexpected value {value}").into());
        }
    }
    Ok(())
}
