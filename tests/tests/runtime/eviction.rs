//! Under memory pressure Redis evicts the cache's own bookkeeping (marks, the epoch, variant
//! tokens, leases) like any other key: losing it must never make an invalidated value readable.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_runtime::{Cache, cached, with_cache};

use crate::config;
use cache_tests::RedisServer;

/// The "database" generation: values loaded before the invalidations carry 1, after them 2.
static ROUND: AtomicU64 = AtomicU64::new(1);

/// Ids of `by_id`; the other two entities use the first [`FEWER_IDS`]. Together they overflow
/// `maxmemory` several times.
const IDS: u32 = 600;
const FEWER_IDS: u32 = 150;
const VARIANTS: u32 = 5;
const GROUPS: u32 = 20;

fn row() -> (u64, Vec<u8>) {
    (ROUND.load(Ordering::SeqCst), vec![7; 1_500])
}

#[cached(entity = "by_id", key = "{id}", variant = "v{v}", tags = ["id_group:{g}"])]
async fn by_id(id: u32, v: u32, g: u32) -> (u64, Vec<u8>) {
    let _ = (id, v, g);
    row()
}

#[cached(entity = "by_tag", key = "{id}", variant = "v{v}", tags = ["tag_group:{g}"])]
async fn by_tag(id: u32, v: u32, g: u32) -> (u64, Vec<u8>) {
    let _ = (id, v, g);
    row()
}

#[cached(entity = "by_entity", key = "{id}", variant = "v{v}", tags = ["entity_group:{g}"])]
async fn by_entity(id: u32, v: u32, g: u32) -> (u64, Vec<u8>) {
    let _ = (id, v, g);
    row()
}

/// Reads every key of the three entities; answers how many came from before the invalidations.
async fn stale_reads(cache: &Cache) -> usize {
    with_cache(cache.clone(), async {
        let mut stale = 0;
        for id in 0..IDS {
            for v in 0..VARIANTS {
                let g = id % GROUPS;
                stale += usize::from(by_id(id, v, g).await.0 == 1);
                if id < FEWER_IDS {
                    stale += usize::from(by_tag(id, v, g).await.0 == 1);
                    stale += usize::from(by_entity(id, v, g).await.0 == 1);
                }
            }
        }
        stale
    })
    .await
}

fn instance(server: &RedisServer) -> Cache {
    let config = config(server)
        .operation_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("config");
    Cache::new(config).expect("cache")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_memory_pressure_no_value_outlives_its_invalidation() {
    let server =
        RedisServer::start_with_args(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lfu"]);
    let a = instance(&server);
    with_cache(a.clone(), async {
        for id in 0..IDS {
            for v in 0..VARIANTS {
                let g = id % GROUPS;
                by_id(id, v, g).await;
                if id < FEWER_IDS {
                    by_tag(id, v, g).await;
                    by_entity(id, v, g).await;
                }
            }
        }
    })
    .await;
    let evicted_before = server.info_number("stats", "evicted_keys");
    assert!(
        evicted_before > 2_000,
        "only {evicted_before} keys were evicted"
    );

    ROUND.store(2, Ordering::SeqCst);
    let by_id_entity = a.entity("by_id").expect("entity");
    for id in 0..IDS {
        a.invalidate_id(&by_id_entity, &id).await.expect("id");
    }
    for g in 0..GROUPS {
        a.invalidate_tag(&format!("tag_group:{g}"))
            .await
            .expect("tag");
    }
    a.invalidate_entity(&a.entity("by_entity").expect("entity"))
        .await
        .expect("entity");

    let b = instance(&server);
    assert_eq!(stale_reads(&b).await, 0, "another instance");
    assert_eq!(stale_reads(&a).await, 0, "the invalidating instance");
    drop(a);
    let restarted = instance(&server);
    assert_eq!(stale_reads(&restarted).await, 0, "the instance, restarted");
    assert!(
        server.info_number("stats", "evicted_keys") > evicted_before,
        "eviction went on meanwhile"
    );
}
