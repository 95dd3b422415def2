//! The names docs/metrics.md promises, scraped through the `metrics` debugging recorder after
//! real traffic against a redis-server.

use std::collections::HashMap;
use std::time::Duration;

use cache_runtime::{Cache, CacheConfig, Ttl};
use cache_tests::RedisServer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// A metric's labels as (key, value) pairs.
type Labels = Vec<(String, String)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_metrics_are_exported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let server = RedisServer::start();
    let cache = Cache::new(
        CacheConfig::builder()
            .redis_url(server.url())
            .app_prefix("shop")
            .metrics_log_interval(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let products = cache.entity("product").expect("entity");
    for _ in 0..3 {
        let value = cache
            .get_or_set(&products.key(&1u32), Ttl::Medium, || async {
                Ok::<_, std::io::Error>("lamp".to_owned())
            })
            .await
            .expect("value");
        assert_eq!(value, "lamp");
    }
    cache.export_metrics();

    let mut found: HashMap<String, Vec<(Labels, DebugValue)>> = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        found
            .entry(key.key().name().to_owned())
            .or_default()
            .push((labels, value));
    }
    let docs = include_str!("../../docs/metrics.md");
    let documented: Vec<&str> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.starts_with("cache_"))
        .collect();
    assert!(
        documented.len() >= 15,
        "docs/metrics.md lists the metrics: {documented:?}"
    );
    for name in &documented {
        assert!(
            found.contains_key(*name),
            "{name} is documented but not exported: {:?}",
            found.keys()
        );
    }
    for name in found.keys() {
        assert!(
            documented.contains(&name.as_str()),
            "{name} is exported but not documented"
        );
    }
    // The dashboard queries only documented names (histograms as their `_bucket`/`_count`).
    let dashboard = include_str!("../../docs/grafana-dashboard.json");
    for at in dashboard.match_indices("cache_").map(|(at, _)| at) {
        let name: String = dashboard[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let base = name
            .strip_suffix("_bucket")
            .or(name.strip_suffix("_count"))
            .unwrap_or(&name);
        if base == "cache_runtime" {
            continue; // the dashboard's own title and uid
        }
        assert!(
            documented.contains(&base),
            "the dashboard queries {name}, which is not exported"
        );
    }

    let value_of = |name: &str, label: (&str, &str)| {
        found[name]
            .iter()
            .find(|(labels, _)| {
                labels
                    .iter()
                    .any(|(k, v)| (k.as_str(), v.as_str()) == label)
            })
            .map(|(_, value)| value)
    };
    // One load, then two hits from Redis.
    assert_eq!(
        value_of("cache_loader_calls_total", ("entity", "product")),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value_of("cache_hits_total", ("tier", "redis")),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        value_of("cache_breaker_state", ("app", "shop")),
        Some(&DebugValue::Gauge(0.0.into()))
    );
    match value_of("cache_redis_operation_seconds", ("outcome", "ok")) {
        Some(DebugValue::Histogram(times)) => {
            assert!(times.len() >= 3, "one per Redis call: {}", times.len());
            assert!(
                times
                    .iter()
                    .all(|t| t.into_inner() < Duration::from_secs(1).as_secs_f64())
            );
        }
        other => panic!("no Redis latency histogram: {other:?}"),
    }
}
