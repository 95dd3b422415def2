//! How many keys a batch read asks for per round trip, and how many commands it keeps in
//! flight as the in-memory Redis sees them arrive (`MemoryRedis::largest_burst`): the figures
//! docs/scaling.md and docs/macros.md give.

use std::collections::HashMap;
use std::time::Duration;

use cache_runtime::{ReadOptions, Ttl};

use cache_runtime::Cache;

use crate::{RedisServer, config};

/// A cache whose calls outlast the test's freeze of the server.
fn cache(server: &RedisServer) -> Cache {
    let config = config(server).operation_timeout(Duration::from_secs(2));
    Cache::new(config.build().expect("config")).expect("cache")
}

const MEDIUM: ReadOptions = ReadOptions::new(Ttl::Medium);

async fn load(ids: Vec<u64>) -> Result<HashMap<u64, u64>, std::io::Error> {
    Ok(ids.into_iter().map(|id| (id, id)).collect())
}

#[tokio::test]
async fn the_first_read_of_a_batch_goes_in_round_trips_of_500_keys_100_per_mget() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let ids: Vec<u64> = (0..1_000).collect();
    cache
        .get_or_set_many(&products, &ids, MEDIUM, load)
        .await
        .expect("filled");
    let memory = server.redis();
    let reads = || (server.command_calls("mget"), server.command_calls("get"));
    let before = reads();
    // Frozen, the server reads nothing: what the batch sends before its first answer waits in
    // the socket, and arrives in one read once thawed.
    memory.freeze();
    let batch = tokio::spawn({
        let (cache, products, ids) = (cache.clone(), products.clone(), ids.clone());
        async move { cache.get_or_set_many(&products, &ids, MEDIUM, load).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    memory.thaw();
    let values = batch.await.expect("task").expect("all hits");
    assert!(values.iter().zip(&ids).all(|(v, id)| *v == Some(*id)));
    // 1,000 keys in `MGET`s of 100, no `GET`; 500 keys' (5 `MGET`s) in flight, no more.
    assert_eq!(reads(), (before.0 + 10, before.1));
    assert_eq!(memory.largest_burst("mget"), 5, "500 keys in flight");
}

#[tokio::test]
async fn a_batchs_misses_keep_at_most_100_keys_calls_in_flight() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let ids: Vec<u64> = (0..1_000).collect();
    let memory = server.redis();
    let values = cache
        .get_or_set_many(&products, &ids, MEDIUM, load)
        .await
        .expect("loaded");
    assert!(values.iter().zip(&ids).all(|(v, id)| *v == Some(*id)));
    assert_eq!(products.metrics().misses, 1_000);
    // Each miss: its lease (`SET … NX`), then the value beside the key (`SET`) and the populate
    // script (`EVALSHA`).
    let (sets, scripts) = (memory.largest_burst("set"), memory.largest_burst("evalsha"));
    assert!(
        sets <= 100 && scripts <= 100,
        "{sets} SETs, {scripts} scripts at once"
    );
    assert!(sets > 1, "the misses' calls go together: {sets}");
}

#[tokio::test]
async fn the_leases_of_a_slow_batch_are_renewed_at_most_100_at_a_time() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let products = cache.entity("product").expect("entity");
    let ids: Vec<u64> = (0..2_000).collect();
    let memory = server.redis();
    // Slower than a third of the 2 s lease: every key's lease is renewed while it loads.
    let slow = |ids: Vec<u64>| async move {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        load(ids).await
    };
    let batch = tokio::spawn({
        let (cache, products, ids) = (cache.clone(), products.clone(), ids.clone());
        async move { cache.get_or_set_many(&products, &ids, MEDIUM, slow).await }
    });
    // Frozen around the first renewals (at a third of the lease, 667 ms): what the batch
    // sends meanwhile arrives in one read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    memory.freeze();
    tokio::time::sleep(Duration::from_millis(400)).await;
    memory.thaw();
    let values = batch.await.expect("task").expect("loaded");
    assert!(values.iter().zip(&ids).all(|(v, id)| *v == Some(*id)));
    assert_eq!(
        products.metrics().stale_sets_prevented,
        0,
        "every lease held"
    );
    // At most 100 renewals, beside at most 100 keys' stores (their populate scripts).
    let scripts = memory.largest_burst("evalsha");
    assert!(scripts <= 200, "{scripts} scripts at once");
}
