//! The other process of the propagation benchmark: keeps `count` keys in its local tier, then
//! prints the wall-clock time (µs since the Unix epoch) of each eviction as it sees its local
//! tier shrink, one per line, until it is empty.
//!
//! `bus_listener <redis-url> <count>`

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_runtime::{Cache, CacheConfig, ReadOptions, Ttl};

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, count] = args.as_slice() else {
        return Err("usage: bus_listener <redis-url> <count>".into());
    };
    let count: u32 = count.parse()?;
    let config = CacheConfig::builder()
        .redis_url(url.as_str())
        .app_prefix("bus")
        .metrics_log_interval(None)
        .build()?;
    let cache = Cache::new(config)?;
    let started = Instant::now();
    while !cache.invalidation_bus_connected() {
        if started.elapsed() > Duration::from_secs(5) {
            return Err("the invalidation subscriber never connected".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let products = cache.entity("product")?;
    let options = ReadOptions::new(Ttl::Long).local();
    for id in 0..count {
        cache
            .get_or_set_with(&products.key(&id), options, || async {
                Ok::<_, String>(id)
            })
            .await?;
    }
    println!("ready");
    let mut held = cache.local_tier_len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while held > 0 {
        if Instant::now() > deadline {
            return Err(format!("{held} entries were never evicted").into());
        }
        tokio::task::yield_now().await;
        let now = cache.local_tier_len();
        for _ in now..held {
            println!("{}", now_us());
        }
        held = now;
    }
    Ok(())
}
