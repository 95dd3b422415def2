//! The runtime on a real Redis Cluster (three masters, one replica each): every feature
//! reaches keys on every master, no request mixes slots, and one master's loss costs only its
//! keys.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{BreakerState, Cache, CacheConfig, CacheError, RedisMode, Ttl};
use cache_tests::{RedisCluster, RedisServer};

use crate::{CountingLoader, subscribed};

fn cluster_cache(cluster: &RedisCluster, app: &str) -> Cache {
    let config = CacheConfig::builder()
        .redis_url(cluster.url())
        .app_prefix(app)
        .metrics_log_interval(None)
        .build()
        .expect("valid config");
    Cache::new(config).expect("cache")
}

/// The value every id loads as, so a test can tell a stale value from a fresh one.
fn named(id: u64, generation: u32) -> String {
    format!("item {id} generation {generation}")
}

/// Reads ids `0..count` of `entity`, loading `generation` for the misses.
async fn read_ids(cache: &Cache, entity: &str, count: u64, generation: u32) -> Vec<String> {
    let items = cache.entity(entity).expect("entity");
    let mut values = Vec::new();
    for id in 0..count {
        let value = cache
            .get_or_set(&items.key(&id), Ttl::Long, || async move {
                Ok::<_, std::io::Error>(named(id, generation))
            })
            .await
            .expect("read");
        values.push(value);
    }
    values
}

/// What [`read_ids`] answers when every id was loaded at `generation`.
fn fresh_ids(count: u64, generation: u32) -> Vec<String> {
    (0..count).map(|id| named(id, generation)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_cache_aside_reaches_every_master_without_crossing_slots() {
    let cluster = RedisCluster::start();
    let cache = cluster_cache(&cluster, "aside");
    let items = cache.entity("item").expect("entity");
    let loader = CountingLoader::default();
    for round in 0..2 {
        for id in 0..300u64 {
            let got = cache
                .get_or_set(&items.key(&id), Ttl::Medium, || loader.load(named(id, 0)))
                .await
                .expect("read");
            assert_eq!(got, named(id, 0), "round {round}");
        }
    }
    assert_eq!(loader.calls(), 300, "each id loaded once, then hit");
    for master in cluster.masters() {
        let held = master.cached_keys("aside:v1:item:*").len();
        assert!(held > 50, "master {} holds {held} keys", master.port());
    }
    let keys: Vec<_> = (0..300u64).map(|id| items.key(&id)).collect();
    let many: Vec<Option<String>> = cache.get_many(&keys).await.expect("get_many");
    assert!(
        many.iter()
            .enumerate()
            .all(|(id, v)| v.as_deref() == Some(named(id as u64, 0).as_str()))
    );
    let nodes = cache.nodes();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(
        nodes
            .iter()
            .all(|(_, state)| *state == BreakerState::Closed)
    );
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_invalidations_of_every_kind_reach_every_master() {
    let cluster = RedisCluster::start();
    let writer = cluster_cache(&cluster, "inv");
    let reader = cluster_cache(&cluster, "inv");
    subscribed(&[&writer, &reader]).await;
    let items = writer.entity("item").expect("entity");
    let read = |generation: u32| read_ids(&reader, "item", 60, generation);
    let fresh = |generation: u32| fresh_ids(60, generation);
    // The other instance learns of an invalidation through the bus: within its delay.
    let converges = |generation: u32, after: &'static str| async move {
        let started = Instant::now();
        loop {
            let values = read(generation).await;
            if values == fresh(generation) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{after}: {values:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(read(0).await, fresh(0));
    // Every kind, each followed by reads that must load the next generation.
    writer.invalidate_entity(&items).await.expect("entity");
    converges(1, "after invalidate_entity").await;
    let removed = writer
        .invalidate_matching(&items, "*")
        .await
        .expect("matching");
    assert_eq!(removed, 60, "every master scanned");
    assert!(
        cluster
            .scan("inv:v1:item:*")
            .iter()
            .all(|k| k.contains(":%"))
    );
    converges(2, "after invalidate_matching").await;
    writer.invalidate_all().await.expect("all");
    converges(3, "after invalidate_all").await;
    for id in 0..60u64 {
        assert_eq!(writer.invalidate_id(&items, &id).await.expect("id"), 1);
    }
    converges(4, "after invalidate_id").await;
    for id in 0..60u64 {
        writer
            .set(&items.key(&id), &named(id, 5), Ttl::Medium)
            .await
            .expect("set");
    }
    assert_eq!(read(6).await, fresh(5), "after set");
    // Nodes that lost their scripts (a restart, `SCRIPT FLUSH`) get them again on the
    // connection that waits for replicas too: ordered writes, then deletions, on every master.
    let flush_scripts = || {
        for node in cluster.nodes() {
            let () = node.query(redis::cmd("SCRIPT").arg("FLUSH"));
        }
    };
    flush_scripts();
    for id in 0..60u64 {
        let (key, newer, older) = (items.key(&id), named(id, 7), named(id, 6));
        let stored = writer.set_ordered(&key, &newer, Ttl::Medium, 7).await;
        assert!(stored.expect("ordered write"), "id {id}");
        let stored = writer.set_ordered(&key, &older, Ttl::Medium, 6).await;
        assert!(!stored.expect("ordered write"), "id {id}");
    }
    assert_eq!(read(8).await, fresh(7), "after set_ordered");
    flush_scripts();
    for id in 0..60u64 {
        assert_eq!(writer.invalidate_id(&items, &id).await.expect("id"), 1);
    }
    converges(9, "after invalidate_id without scripts").await;
    assert_eq!(writer.pending_invalidations(), 0);
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_variants_tags_and_sessions_work_across_slots() {
    let cluster = RedisCluster::start();
    let cache = cluster_cache(&cluster, "parts");
    let items = cache.entity("item").expect("entity");
    let loader = CountingLoader::default();
    for id in 0..40u64 {
        for page in ["p1", "p2"] {
            let key = items.variant_key(&id, page);
            let got = cache
                .get_or_set(&key, Ttl::Medium, || loader.load(format!("{id}/{page}")))
                .await
                .expect("variant");
            assert_eq!(got, format!("{id}/{page}"));
        }
    }
    for id in 0..40u64 {
        cache
            .invalidate_id(&items, &id)
            .await
            .expect("invalidate id");
    }
    for id in 0..40u64 {
        let key = items.variant_key(&id, "p1");
        let got = cache
            .get_or_set(&key, Ttl::Medium, || loader.load(format!("new {id}")))
            .await
            .expect("variant");
        assert_eq!(got, format!("new {id}"), "variants of id {id} invalidated");
    }
    cache.invalidate_tag("some-tag").await.expect("tag");
    let sessions = cache_runtime::Sessions::<String>::new(
        &cache,
        "session",
        Duration::from_secs(60),
        Duration::from_secs(600),
    )
    .expect("sessions");
    let mut ids = Vec::new();
    for user in 0..20u64 {
        ids.push(
            sessions
                .create(&user.to_string(), &format!("user {user}"))
                .await
                .expect("session"),
        );
    }
    for (user, id) in ids.iter().enumerate() {
        let got: Option<String> = sessions.get(id).await.expect("session read");
        assert_eq!(got, Some(format!("user {user}")));
    }
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_single_flight_holds_across_instances() {
    let cluster = RedisCluster::start();
    let caches: Vec<Cache> = (0..2).map(|_| cluster_cache(&cluster, "flight")).collect();
    let loader = CountingLoader::default();
    let mut tasks = Vec::new();
    for task in 0..16 {
        let cache = caches[task % 2].clone();
        let loader = loader.clone();
        tasks.push(tokio::spawn(async move {
            let key = cache.entity("item").expect("entity").key(&7u64);
            cache
                .get_or_set(&key, Ttl::Medium, || async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    loader.load(named(7, 0)).await
                })
                .await
                .expect("read")
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), named(7, 0));
    }
    assert_eq!(loader.calls(), 1, "one load across both instances");
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_that_does_not_match_the_server_is_a_clear_error() {
    let cluster = RedisCluster::start();
    let as_node = Cache::new(
        CacheConfig::builder()
            .redis_url(cluster.nodes()[0].url())
            .redis_mode(RedisMode::Node)
            .app_prefix("mode")
            .metrics_log_interval(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let key = as_node.entity("item").expect("entity").key(&1u64);
    let error = as_node.get::<String>(&key).await.expect_err("refused");
    assert!(matches!(error, CacheError::Topology(_)), "{error:?}");
    assert!(error.to_string().contains("CACHE_REDIS_MODE"), "{error}");

    let plain = RedisServer::start();
    let as_cluster = Cache::new(
        CacheConfig::builder()
            .redis_url(plain.url())
            .redis_mode(RedisMode::Cluster)
            .app_prefix("mode")
            .metrics_log_interval(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let error = as_cluster.get::<String>(&key).await.expect_err("refused");
    assert!(error.to_string().contains("plain Redis"), "{error}");

    // A single cluster node given in the default mode is found to be one.
    let auto = Cache::new(
        CacheConfig::builder()
            .redis_url(cluster.nodes()[0].url())
            .app_prefix("mode")
            .metrics_log_interval(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let items = auto.entity("item").expect("entity");
    for id in 0..30u64 {
        auto.set(&items.key(&id), &named(id, 0), Ttl::Medium)
            .await
            .expect("set on every master through one seed");
    }
    assert_eq!(auto.nodes().len(), 3);
}

/// 32 tasks read keys of every master for 8 s; one master is killed after 2 s. No call fails
/// (a dead master's keys go to the source), the other masters' keys keep hitting, and the
/// dead master's keys hit again soon after its replica is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_kill_a_master_costs_only_its_keys() {
    kill_a_master(false).await;
}

/// The same with `cluster-require-full-coverage yes`: every master answers `CLUSTERDOWN` from
/// the failure mark to the promotion. No call fails, those calls go to the source without
/// opening the live masters' breakers, and every key hits again after the promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_kill_a_master_with_full_coverage_required() {
    kill_a_master(true).await;
}

async fn kill_a_master(full_coverage: bool) {
    let coverage = if full_coverage { "yes" } else { "no" };
    let mut cluster = RedisCluster::start_with(&["--cluster-require-full-coverage", coverage]);
    let cache = cluster_cache(&cluster, "kill");
    let items = cache.entity("item").expect("entity");
    let ids: Vec<u64> = (0..600).collect();
    for &id in &ids {
        cache
            .set(&items.key(&id), &named(id, 0), Ttl::Long)
            .await
            .expect("warm");
    }
    // Not the master of the app mark: its failover fences the app (a promoted replica may lack
    // the last writes), which starts every key cold once; docs/cluster.md.
    let home = cluster.master_of("kill:%mark").port();
    let victim = cluster
        .masters()
        .into_iter()
        .find(|m| m.port() != home)
        .map(|m| cluster.index_of(m))
        .expect("another master");
    let victim_port = cluster.nodes()[victim].port();
    let on_victim: HashSet<u64> = ids
        .iter()
        .copied()
        .filter(|id| {
            let key = items.key(id);
            cluster.master_of(key.as_str()).port() == victim_port
        })
        .collect();
    assert!(on_victim.len() > 100);

    let started = Instant::now();
    let failed = Arc::new(AtomicU64::new(0));
    // Per 100 ms window since the start: (live masters' reads, their hits, victim's hits).
    let windows: Arc<Vec<[AtomicU64; 3]>> =
        Arc::new((0..100).map(|_| Default::default()).collect());
    let run_for = Duration::from_secs(8);
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let (cache, items, failed, windows) = (
            cache.clone(),
            items.clone(),
            failed.clone(),
            windows.clone(),
        );
        let on_victim = on_victim.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = task;
            while started.elapsed() < run_for {
                n = (n * 7 + 13) % 600;
                let mut loaded = false;
                let got = cache
                    .get_or_set(&items.key(&n), Ttl::Long, || {
                        loaded = true;
                        async move { Ok::<_, std::io::Error>(named(n, 0)) }
                    })
                    .await;
                let window = &windows[(started.elapsed().as_millis() / 100) as usize % 100];
                match got {
                    Ok(value) if value == named(n, 0) => {
                        let victim = on_victim.contains(&n);
                        if !victim {
                            window[0].fetch_add(1, Ordering::Relaxed);
                        }
                        if !loaded {
                            window[if victim { 2 } else { 1 }].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = started.elapsed();
    cluster.node_mut(victim).stop();
    let victim_address = format!("127.0.0.1:{victim_port}");
    let breakers = {
        let cache = cache.clone();
        tokio::spawn(async move {
            // Every live master's breaker that left `Closed` while the cluster was down.
            let mut opened = Vec::new();
            while started.elapsed() < run_for {
                for (address, state) in cache.nodes() {
                    if address != victim_address && state != BreakerState::Closed {
                        opened.push(address);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            opened
        })
    };
    // A batch read answers the dead master's keys as misses and the rest as usual.
    let keys: Vec<_> = ids.iter().map(|id| items.key(id)).collect();
    let batch: Vec<Option<String>> = cache.get_many(&keys).await.expect("get_many");
    for (id, held) in ids.iter().zip(&batch) {
        match (on_victim.contains(id), full_coverage) {
            (true, _) => assert_eq!(held, &None, "id {id} on the dead master"),
            // Not yet marked failed: the others still answer, or already `CLUSTERDOWN`.
            (false, true) => {}
            (false, false) => {
                assert_eq!(held.as_deref(), Some(named(*id, 0).as_str()), "id {id}")
            }
        }
    }
    // The promotion, as the cluster reports it.
    let promoted_at = loop {
        let masters = cluster.masters().len();
        let ok = cluster.nodes()[(victim + 1) % 6]
            .try_query::<String>(redis::cmd("CLUSTER").arg("INFO"))
            .is_some_and(|i| i.contains("cluster_state:ok"));
        if masters == 3 && ok {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(7), "no promotion");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for task in tasks {
        task.await.expect("reader");
    }
    let opened = breakers.await.expect("sampler");
    assert!(
        opened.is_empty(),
        "live masters' breakers left Closed: {opened:?}"
    );
    let window_ms = |w: usize| w as u128 * 100;
    let first_victim_hit = (0..80)
        .filter(|&w| window_ms(w) > promoted_at.as_millis())
        .find(|&w| windows[w][2].load(Ordering::Relaxed) > 0)
        .map(window_ms);
    let live: (u64, u64) = windows
        .iter()
        .take(75)
        .skip(3)
        .map(|w| (w[0].load(Ordering::Relaxed), w[1].load(Ordering::Relaxed)))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let quiet_windows = (3..75)
        .filter(|&w| windows[w][1].load(Ordering::Relaxed) == 0)
        .count();
    println!(
        "kill a master (full coverage {coverage}): killed at {killed_at:?}, promoted at {promoted_at:?}, first hit on the promoted replica at {first_victim_hit:?} ms, live masters' hit ratio {:.3} ({} of {}), windows without a live hit {quiet_windows}, failed calls {}",
        live.1 as f64 / live.0.max(1) as f64,
        live.1,
        live.0,
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no call failed");
    if full_coverage {
        // Every key hits again once the promoted replica serves: the last second hit.
        let last: u64 = (70..78)
            .map(|w| windows[w][1].load(Ordering::Relaxed))
            .sum();
        assert!(last > 0, "live masters hit again after the promotion");
    } else {
        assert!(
            live.1 as f64 >= 0.95 * live.0 as f64,
            "live masters kept hitting"
        );
        assert_eq!(quiet_windows, 0, "live masters hit in every 100 ms");
    }
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
    let first = first_victim_hit.expect("the dead master's keys hit again");
    assert!(
        first <= promoted_at.as_millis() + 1_000,
        "first hit on the promoted replica {first} ms, promotion at {promoted_at:?}"
    );
}

/// What `cache` holds under `key` once it answers at all (a read right after a failover may
/// still go to the dead master and fall back): `None` if the key is invalid or gone.
async fn settled_get(cache: &Cache, key: &cache_runtime::CacheKey) -> Option<String> {
    let started = Instant::now();
    loop {
        match cache.get::<String>(key).await {
            Ok(value) => return value,
            Err(error) => assert!(started.elapsed() < Duration::from_secs(5), "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An entity of app `app` whose mark lives on a master other than the app mark's (whose
/// failover fences the whole app anyway).
fn entity_off_home(cluster: &RedisCluster, app: &str) -> String {
    let home = cluster.master_of(&format!("{app}:%mark")).port();
    (0..64)
        .map(|n| format!("item{n}"))
        .find(|name| cluster.master_of(&format!("{app}:v1:{name}:%mark")).port() != home)
        .expect("an entity whose mark is off the home master")
}

/// An id of `items` (app `app`) whose key lives on a master other than the app mark's.
fn id_off_home(cluster: &RedisCluster, items: &cache_runtime::Entity, app: &str) -> u64 {
    let home = cluster.master_of(&format!("{app}:%mark")).port();
    (0..64u64)
        .find(|id| cluster.master_of(items.key(id).as_str()).port() != home)
        .expect("an id off the home master")
}

/// Freezes the replica of the master holding `key`, runs `invalidate` (which must come back
/// unconfirmed and stay pending), kills that master and thaws the replica, which is promoted
/// without the invalidation. Answers once the invalidation was replayed to it.
async fn lose_an_invalidation<T: std::fmt::Debug, F: Future<Output = Result<T, CacheError>>>(
    cluster: &mut RedisCluster,
    writer: &Cache,
    key: &str,
    invalidate: F,
) {
    let master = cluster.index_of(cluster.master_of(key));
    // A value on another master, which stays readable while the invalidation is pending: only
    // its own shard's reads are kept from Redis.
    let probes = writer.entity("probe").expect("entity");
    let probe = (0..64u64)
        .map(|id| probes.key(&id))
        .find(|k| cluster.index_of(cluster.master_of(k.as_str())) != master)
        .expect("a key on another master");
    writer.set(&probe, "probe", Ttl::Long).await.expect("set");
    for _ in 0..2 {
        assert_eq!(
            writer.get::<String>(&probe).await.expect("get").as_deref(),
            Some("probe")
        );
    }
    let replica = cluster.index_of(cluster.replica_of(&cluster.nodes()[master]));
    cluster.nodes()[replica].freeze();
    // More than the sockets between them buffer: the invalidation then waits in the master's
    // output buffer, not in the frozen replica's kernel, when the master dies.
    let filler = vec![b'x'; 1 << 20];
    for n in 0..30 {
        let () = cluster.nodes()[master].query(
            redis::cmd("SET")
                .arg(format!("{{{key}}}:filler:{n}"))
                .arg(&filler),
        );
    }
    let unconfirmed = invalidate.await.expect_err("no replica could confirm it");
    assert!(
        matches!(unconfirmed, CacheError::Unconfirmed { acked: 0, .. }),
        "{unconfirmed:?}"
    );
    assert_eq!(writer.pending_invalidations(), 1, "kept for replay");
    let hits = probes.metrics().hits;
    assert_eq!(
        writer.get::<String>(&probe).await.expect("get").as_deref(),
        Some("probe")
    );
    assert_eq!(
        probes.metrics().hits,
        hits + 1,
        "another shard's key still hits"
    );
    cluster.node_mut(master).stop();
    cluster.nodes()[replica].thaw();
    cluster.wait_for_three_masters(Duration::from_secs(10));
    let started = Instant::now();
    while writer.pending_invalidations() > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "never replayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A mark raise the master took but its replica never saw, then a failover to that replica:
/// the raise was unconfirmed (`WAIT`), stayed pending and is replayed to the promoted replica,
/// so neither a running instance nor one started afterwards serves the old values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_raise_lost_in_a_failover_is_replayed() {
    let mut cluster = RedisCluster::start();
    let name = entity_off_home(&cluster, "lost");
    let (writer, reader) = (
        cluster_cache(&cluster, "lost"),
        cluster_cache(&cluster, "lost"),
    );
    subscribed(&[&writer, &reader]).await;
    let read_all = |cache: Cache, generation: u32| {
        let name = name.clone();
        async move { read_ids(&cache, &name, 30, generation).await }
    };
    let fresh = |generation: u32| fresh_ids(30, generation);
    // Twice: the hits have the entity's mark made (a missing mark would void every value).
    assert_eq!(read_all(reader.clone(), 0).await, fresh(0));
    assert_eq!(read_all(reader.clone(), 0).await, fresh(0));
    let items = writer.entity(&name).expect("entity");
    let mark = format!("lost:v1:{name}:%mark");
    lose_an_invalidation(
        &mut cluster,
        &writer,
        &mark,
        writer.invalidate_entity(&items),
    )
    .await;
    let started_after = cluster_cache(&cluster, "lost");
    for (who, cache) in [("running", &reader), ("started after", &started_after)] {
        let items = cache.entity(&name).expect("entity");
        for id in 0..30u64 {
            let held = settled_get(cache, &items.key(&id)).await;
            assert_eq!(held, None, "an instance {who} the replay read id {id}");
        }
    }
    assert_eq!(read_all(started_after, 1).await, fresh(1));
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

/// The same for `invalidate_id` with variants: the delete of the id's variants token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_delete_lost_in_a_failover_is_replayed() {
    let mut cluster = RedisCluster::start();
    let writer = cluster_cache(&cluster, "gone");
    let items = writer.entity("item").expect("entity");
    let id = id_off_home(&cluster, &items, "gone");
    let read = |cache: Cache, value: &'static str| async move {
        let key = cache
            .entity("item")
            .expect("entity")
            .variant_key(&id, "page1");
        cache
            .get_or_set(&key, Ttl::Long, || async {
                Ok::<_, std::io::Error>(value.to_owned())
            })
            .await
            .expect("read")
    };
    // Twice: the hit has the entity's mark made (a missing mark would void every value).
    assert_eq!(read(writer.clone(), "old").await, "old");
    assert_eq!(read(writer.clone(), "old").await, "old");
    let key = items.key(&id);
    lose_an_invalidation(
        &mut cluster,
        &writer,
        key.as_str(),
        writer.invalidate_id(&items, &id),
    )
    .await;
    let started_after = cluster_cache(&cluster, "gone");
    for (who, cache) in [("invalidating", &writer), ("started after", &started_after)] {
        let key = cache
            .entity("item")
            .expect("entity")
            .variant_key(&id, "page1");
        assert_eq!(settled_get(cache, &key).await, None, "the {who} instance");
    }
    assert_eq!(read(started_after, "new").await, "new");
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

/// An explicit write the master took but its replica never saw: unconfirmed, it fails and the
/// key's invalidation stays pending, so the promoted replica's older value is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_write_lost_in_a_failover_is_not_undone() {
    let mut cluster = RedisCluster::start();
    let writer = cluster_cache(&cluster, "put");
    let items = writer.entity("item").expect("entity");
    let id = id_off_home(&cluster, &items, "put");
    let key = items.key(&id);
    writer.set(&key, "old", Ttl::Long).await.expect("set");
    // Twice: the hit has the entity's mark made (a missing mark would void every value).
    for _ in 0..2 {
        assert_eq!(
            writer.get::<String>(&key).await.expect("get").as_deref(),
            Some("old")
        );
    }
    lose_an_invalidation(
        &mut cluster,
        &writer,
        key.as_str(),
        writer.set(&key, "new", Ttl::Long),
    )
    .await;
    let started_after = cluster_cache(&cluster, "put");
    for (who, cache) in [("writing", &writer), ("started after", &started_after)] {
        let key = cache.entity("item").expect("entity").key(&id);
        assert_ne!(
            settled_get(cache, &key).await.as_deref(),
            Some("old"),
            "the {who} instance"
        );
    }
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

/// How many subscribers each node has on `channel` (`PUBSUB NUMSUB` counts a node's own).
fn subscribers_by_node(cluster: &RedisCluster, channel: &str) -> Vec<i64> {
    cluster
        .nodes()
        .iter()
        .map(|node| {
            node.try_query::<(String, i64)>(redis::cmd("PUBSUB").arg("NUMSUB").arg(channel))
                .map_or(0, |(_, n)| n)
        })
        .collect()
}

/// The bus subscribes on a replica; when that replica is promoted (`CLUSTER FAILOVER`), the
/// subscription moves to a replica again, so a later death of that node ends no bus session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_the_bus_leaves_a_replica_that_turned_master() {
    let cluster = RedisCluster::start();
    let cache = cluster_cache(&cluster, "moves");
    subscribed(&[&cache]).await;
    let channel = cache_runtime::inspect::invalidation_channel("moves");
    let counts = subscribers_by_node(&cluster, &channel);
    let on = counts
        .iter()
        .position(|&n| n == 1)
        .expect("one subscription");
    let masters: Vec<u16> = cluster.masters().iter().map(|m| m.port()).collect();
    assert!(
        !masters.contains(&cluster.nodes()[on].port()),
        "on a replica"
    );
    let () = cluster.nodes()[on].query(redis::cmd("CLUSTER").arg("FAILOVER"));
    let started = Instant::now();
    loop {
        let counts = subscribers_by_node(&cluster, &channel);
        let masters: Vec<u16> = cluster.masters().iter().map(|m| m.port()).collect();
        let moved = counts[on] == 0
            && counts.iter().sum::<i64>() == 1
            && counts
                .iter()
                .zip(cluster.nodes())
                .all(|(n, node)| *n == 0 || !masters.contains(&node.port()));
        if moved && cache.invalidation_bus_connected() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still on {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The macros on a cluster: a repository's reads, variants, invalidations and write-through,
/// with every key and its bookkeeping on whichever master its slot names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_macros_read_invalidate_and_write_through() {
    use crate::macros::{ProductUpdate, Repo, Sort, product};

    let cluster = RedisCluster::start();
    let cache = cluster_cache(&cluster, "repo");
    let repo = Repo {
        db: crate::macros::Db::with_products((0..60).map(|id| product(id, (id % 3) as u32))),
    };
    cache_runtime::with_cache(cache, async {
        for id in 0..60 {
            assert_eq!(repo.product(id).await, Ok(product(id, (id % 3) as u32)));
        }
        for category in 0..3 {
            for page in 0..2 {
                repo.list(category, page, Sort::Name).await.expect("list");
            }
        }
        let loaded = repo.db.queries();
        for id in 0..60 {
            repo.product(id).await.expect("hit");
        }
        repo.list(1, 0, Sort::Name).await.expect("hit");
        assert_eq!(repo.db.queries(), loaded, "every read a hit");

        let update = ProductUpdate {
            name: "renamed".to_owned(),
            category: 1,
        };
        repo.update(7, &update).await.expect("update");
        assert_eq!(repo.product(7).await.expect("read").name, "renamed");
        let listed = repo.list(1, 0, Sort::Name).await.expect("list");
        assert!(listed.iter().any(|p| p.id == 7), "the list was invalidated");
        let mut saved = product(8, 2);
        saved.name = "saved".to_owned();
        repo.save(saved.clone()).await.expect("save");
        let before = repo.db.queries();
        assert_eq!(repo.product(8).await, Ok(saved), "written through");
        assert_eq!(repo.db.queries(), before, "served from the cache");
    })
    .await;
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

/// No seed answering is Redis down: reads go to the source and the breaker opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_no_seed_answering_is_redis_down() {
    let cache = Cache::new(
        CacheConfig::builder()
            .redis_url("redis://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3")
            .redis_mode(RedisMode::Cluster)
            .app_prefix("down")
            .metrics_log_interval(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let items = cache.entity("item").expect("entity");
    let loader = CountingLoader::default();
    for id in 0..10u64 {
        let got = cache
            .get_or_set(&items.key(&id), Ttl::Medium, || loader.load(named(id, 0)))
            .await
            .expect("the source answers");
        assert_eq!(got, named(id, 0));
    }
    assert_eq!(loader.calls(), 10);
    assert_eq!(cache.breaker_state(), BreakerState::Open);
}

/// Four processes × 250 concurrent calls on one cold key of a cluster: the lease holds across
/// processes there too (one loader call in all).
#[test]
fn cluster_four_processes_on_one_cold_key_make_one_loader_call() {
    let cluster = RedisCluster::start();
    // The go signal and the count, on a plain Redis beside the cluster.
    let signals = RedisServer::start();
    let mut clients: Vec<std::process::Child> = (0..4)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_stampede_client"))
                .args([
                    cluster.url(),
                    "250".into(),
                    "300".into(),
                    "on".into(),
                    signals.url(),
                ])
                .spawn()
                .expect("spawn stampede_client")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let () = signals.query(redis::cmd("SET").arg("stampede:go").arg(1));
    for child in &mut clients {
        assert!(child.wait().expect("wait").success(), "a client failed");
    }
    let calls: Option<i64> = signals.query(redis::cmd("GET").arg("stampede:loader_calls"));
    assert_eq!(calls, Some(1));
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

/// A purge of an old version visits every master, a batch at a time with a cursor of its own
/// on each, and resumes where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_purge_removes_the_old_version_from_every_master() {
    let cluster = RedisCluster::start();
    let at = |version: u32| {
        let config = CacheConfig::builder()
            .redis_url(cluster.url())
            .app_prefix("purge")
            .version(version)
            .metrics_log_interval(None)
            .build()
            .expect("config");
        Cache::new(config).expect("cache")
    };
    let (old, new) = (at(1), at(2));
    for (cache, count) in [(&old, 300u64), (&new, 30)] {
        let items = cache.entity("item").expect("entity");
        for id in 0..count {
            cache
                .set(&items.key(&id), &id, Ttl::Long)
                .await
                .expect("set");
        }
    }
    let options = || {
        cache_runtime::PurgeOptions::default()
            .batch(50)
            .max_batches(2)
    };
    let first = new.purge_old_versions(options()).await.expect("purge");
    assert!(!first.done, "two batches do not cover three masters");
    let mut removed = first.removed;
    for _ in 0..20 {
        let next = new.purge_old_versions(options()).await.expect("purge");
        removed += next.removed;
        if next.done {
            break;
        }
    }
    // The 300 values, and the old version's own mark.
    assert_eq!(removed, 301);
    let values = |pattern: &str| {
        cluster
            .scan(pattern)
            .into_iter()
            .filter(|k| !k.contains(":%"))
            .count()
    };
    assert_eq!(values("purge:v1:*"), 0, "every master purged");
    assert_eq!(values("purge:v2:*"), 30, "the current version kept");
    assert!(
        cluster.scan("*purge-cursor*").is_empty(),
        "cursors removed when done"
    );
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}

/// A node's cluster id (`CLUSTER MYID`).
fn node_id(node: &RedisServer) -> String {
    node.query(redis::cmd("CLUSTER").arg("MYID"))
}

/// A slot moves to another master while the cache reads it: during the migration the old
/// owner answers `ASK` for the key it no longer holds, afterwards every node answers `MOVED`.
/// The cache follows both (one resend each, the table read again after `MOVED`) and every read
/// returns the stored value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_slot_moving_is_followed_through_ask_and_moved() {
    let cluster = RedisCluster::start();
    let cache = cluster_cache(&cluster, "moving");
    let key = cache.entity("item").expect("entity").key(&1u64);
    cache.set(&key, key.as_str(), Ttl::Long).await.expect("set");
    let read = || async { cache.get::<String>(&key).await.expect("read") };
    assert_eq!(read().await.as_deref(), Some(key.as_str()));
    let slot: u16 =
        cluster.nodes()[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key.as_str()));
    let source = cluster.master_of(key.as_str());
    let target = cluster
        .masters()
        .into_iter()
        .find(|m| m.port() != source.port())
        .expect("another master");
    let (source_id, target_id) = (node_id(source), node_id(target));
    let setslot = |node: &RedisServer, how: &str, id: &str| {
        let () = node.query(
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(how)
                .arg(id),
        );
    };
    setslot(target, "IMPORTING", &source_id);
    setslot(source, "MIGRATING", &target_id);
    // The key moves, the slot stays half migrated: its old owner answers `ASK`.
    let () = source.query(
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(target.port())
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(key.as_str()),
    );
    let asks = cluster.error_count("ASK");
    assert_eq!(read().await.as_deref(), Some(key.as_str()), "ASK followed");
    assert!(
        cluster.error_count("ASK") > asks,
        "the read was redirected with ASK"
    );
    for node in cluster.masters() {
        setslot(node, "NODE", &target_id);
    }
    let moved = cluster.error_count("MOVED");
    assert_eq!(
        read().await.as_deref(),
        Some(key.as_str()),
        "MOVED followed"
    );
    assert!(
        cluster.error_count("MOVED") > moved,
        "the read was redirected with MOVED"
    );
    // The table was read again: later reads go straight to the new owner.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved = cluster.error_count("MOVED");
    for _ in 0..20 {
        assert_eq!(read().await.as_deref(), Some(key.as_str()));
    }
    assert_eq!(
        cluster.error_count("MOVED"),
        moved,
        "no redirection once the table is new"
    );
    assert_eq!(cluster.error_count("CROSSSLOT"), 0);
}
