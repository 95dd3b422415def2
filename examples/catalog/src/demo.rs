//! `catalog demo`: the service under load without the cache, then with it, in one table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, CacheConfig, EntityMetrics, RateLimiter};

use crate::db::Db;
use crate::http::{App, router};
use crate::load::{self, Load, Outcome};
use crate::redis_setup;
use crate::repo::Catalog;

#[derive(Debug)]
pub struct Options {
    pub seconds: u64,
    pub warmup: u64,
    pub clients: usize,
}

struct Phase {
    name: &'static str,
    outcome: Outcome,
    reads: u64,
    writes: u64,
    metrics: Vec<EntityMetrics>,
}

pub async fn run(options: Options) -> Result<(), String> {
    let url =
        std::env::var("CACHE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = redis_setup::find_or_start(&url).await;
    println!("{}", redis.describe());
    if let Some(note) = redis_setup::production_note(&redis).await {
        println!("{note}");
    }
    // A prefix of this run's own: two demos on one Redis (or a service using `catalog`) never
    // see each other's keys, and the keys are removed at the end.
    let prefix = format!("catalog-demo-{}", std::process::id());

    let path = std::env::temp_dir().join(format!("catalog-demo-{}.db", std::process::id()));
    let (db, described) = Db::from_env(&path, 4)
        .await
        .map_err(|e| format!("cannot create the database: {}", e.0))?;
    println!("{described}");

    let prometheus = crate::http::install_prometheus();
    let cache = match redis.url() {
        Some(url) => Some(start_cache(url, &prefix).await?),
        None => None,
    };
    let limiter = match &cache {
        // Generous: the load stays under it; a client over it gets 429 with Retry-After.
        Some(cache) => Some(
            RateLimiter::new(cache, "api", 1_000_000, Duration::from_secs(1))
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let bypass = Arc::new(AtomicBool::new(true));
    let app = App {
        catalog: Catalog { db: db.clone() },
        cache: cache.clone(),
        bypass: bypass.clone(),
        limiter,
        prometheus,
    };
    let service = router(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    if let Ok(address) = listener.local_addr() {
        println!(
            "service at http://{address} (e.g. curl http://{address}/products/42) while the demo runs"
        );
    }
    let served = service.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, served).await;
    });

    let load = Arc::new(Load::new(service));
    let duration = Duration::from_secs(options.seconds.max(1));
    let warmup = match cache {
        Some(_) => format!(
            ", {}s of warm-up before the cached one (not measured)",
            options.warmup
        ),
        None => String::new(),
    };
    println!(
        "\n{} clients, {}s per phase{warmup}: 70 % product reads, 15 % category pages, 7 % searches, 3 % price statistics (Zipf-distributed), 5 % price changes (uniform)\n",
        options.clients,
        duration.as_secs(),
    );
    let mut phases = vec![
        measure(
            &load,
            &db,
            cache.as_ref(),
            &options,
            duration,
            "without cache",
        )
        .await,
    ];
    if cache.is_some() {
        bypass.store(false, Ordering::Relaxed);
        // A service runs warm: the product tier needs about 20 s of this load to reach its
        // steady state (after 4 s, 9 % of product reads still miss; after 20 s, 4 %, nearly
        // all of them reads of a product a price change just invalidated).
        let warmup = Duration::from_secs(options.warmup);
        if !warmup.is_zero() {
            load::run(load.clone(), options.clients, warmup, "warming cache").await;
        }
        phases.push(measure(&load, &db, cache.as_ref(), &options, duration, "with cache").await);
    }
    print_table(&phases);
    if let Some(cache) = &cache {
        print_hit_ratios(&phases[1].metrics);
        println!(
            "\ncircuit breaker: {:?}; invalidation bus connected: {}",
            cache.breaker_state(),
            cache.invalidation_bus_connected()
        );
        if let [without, with] = &phases[..] {
            let fewer = |queries: fn(&Phase) -> u64| {
                let per_request = |p: &Phase| queries(p) as f64 / p.outcome.requests.max(1) as f64;
                per_request(without) / per_request(with).max(1e-9)
            };
            println!(
                "database reads per request: {:.1}× fewer with the cache; all queries (the writes \
                 included, which no cache saves): {:.1}× fewer; {:.1}× the requests served",
                fewer(|p| p.reads),
                fewer(|p| p.reads + p.writes),
                with.outcome.per_second() / without.outcome.per_second().max(1e-9)
            );
        }
    } else {
        println!("\nno cache was used: {}", redis.describe());
    }
    let stale: u64 = phases.iter().map(|p| p.outcome.stale_reads).sum();
    println!(
        "stale reads: {stale} (every product read is checked against the last committed write)"
    );
    if let (Some(url), redis_setup::DemoRedis::Running(_)) = (redis.url(), &redis) {
        match redis_setup::remove_prefix(url, &prefix).await {
            Ok(removed) => {
                println!("removed this run's {removed} keys ({prefix}:*) from the Redis")
            }
            Err(error) => println!(
                "could not remove this run's keys ({prefix}:*): {error}; they expire on their TTLs"
            ),
        }
    }
    drop(redis);
    let _ = std::fs::remove_file(&path);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    if stale > 0 {
        return Err(format!("{stale} stale reads"));
    }
    Ok(())
}

async fn start_cache(url: &str, prefix: &str) -> Result<Cache, String> {
    let config = CacheConfig::builder()
        .redis_url(url)
        .app_prefix(prefix)
        .metrics_log_interval(None)
        .build()
        .map_err(|e| e.to_string())?;
    // The prefix is new, so nothing an earlier run cached can be served: nothing to reset.
    let cache = Cache::new(config).map_err(|e| e.to_string())?;
    cache_runtime::install(cache.clone()).map_err(|e| e.to_string())?;
    Ok(cache)
}

async fn measure(
    load: &Arc<Load>,
    db: &Db,
    cache: Option<&Cache>,
    options: &Options,
    duration: Duration,
    name: &'static str,
) -> Phase {
    let (reads, writes) = (db.reads(), db.writes());
    let before = cache.map(Cache::metrics).unwrap_or_default();
    let outcome = load::run(load.clone(), options.clients, duration, name).await;
    let after = cache.map(Cache::metrics).unwrap_or_default();
    let metrics = after
        .iter()
        .map(|now| match before.iter().find(|b| b.entity == now.entity) {
            Some(earlier) => now.since(earlier),
            None => now.clone(),
        })
        .collect();
    Phase {
        name,
        outcome,
        reads: db.reads() - reads,
        writes: db.writes() - writes,
        metrics,
    }
}

fn print_table(phases: &[Phase]) {
    println!(
        "| | requests/s | p50 | p99 | database reads | per request | database writes | stale reads | errors | 429s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for p in phases {
        let o = &p.outcome;
        println!(
            "| {} | {:.0} | {:.2?} | {:.2?} | {} ({:.0}/s) | {:.3} | {} | {} | {} | {} |",
            p.name,
            o.per_second(),
            o.percentile(0.5),
            o.percentile(0.99),
            p.reads,
            p.reads as f64 / o.elapsed.as_secs_f64(),
            p.reads as f64 / o.requests.max(1) as f64,
            p.writes,
            o.stale_reads,
            o.errors,
            o.limited
        );
    }
}

fn print_hit_ratios(metrics: &[EntityMetrics]) {
    let mut by_entity: BTreeMap<&str, &EntityMetrics> = BTreeMap::new();
    for m in metrics {
        by_entity.insert(&m.entity, m);
    }
    println!("\nhit ratio with the cache, per entity and tier:");
    for (entity, m) in &by_entity {
        // `hits` counts both tiers' hits.
        let reads = m.hits + m.misses;
        if reads == 0 {
            continue;
        }
        let pct = |n: u64| n as f64 * 100.0 / reads as f64;
        println!(
            "  {entity:<15} {:>5.1} %  (local {:.1} %, redis {:.1} %, miss {:.1} %; {} source calls, {} coalesced)",
            pct(m.hits),
            pct(m.local_hits),
            pct(m.redis_hits()),
            pct(m.misses),
            m.loader_calls,
            m.coalesced
        );
    }
    if by_entity.contains_key("category_stats") {
        println!(
            "  (category_stats is a category's price statistics: every price change in the \
             category invalidates them, and at this load price changes (5 % of requests) reach \
             each category several times a second, so many of their reads come right after a \
             change and recompute them: the price of never serving statistics older than a \
             committed price. Without the cache every read recomputes them.)"
        );
    }
}
