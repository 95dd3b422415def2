//! The catalog service against a real redis-server: reads are cached, every write keeps what
//! shows it right, and a client over its limit gets 429 with Retry-After.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use cache_runtime::{Cache, CacheConfig, RateLimiter};
use cache_tests::RedisServer;
use catalog::db::{Db, Product, Summary};
use catalog::http::{App, install_prometheus, router};
use catalog::repo::Catalog;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use tower::ServiceExt;

struct Service {
    router: Router,
    db: Db,
    server: RedisServer,
    _file: Option<TempDb>,
}

/// A database file removed at the end.
struct TempDb(std::path::PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// The service over SQLite.
async fn service(limit: u32) -> Service {
    // One file per service: tests run in parallel.
    static SERVICES: AtomicU32 = AtomicU32::new(0);
    let n = SERVICES.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("catalog-test-{}-{n}.db", std::process::id()));
    let db = Db::create(&path, 2).expect("database");
    service_over(db, Some(TempDb(path)), limit).await
}

/// The process's Prometheus recorder, installed before the first cache is built.
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(install_prometheus).clone()
}

async fn service_over(db: Db, file: Option<TempDb>, limit: u32) -> Service {
    let prometheus = prometheus();
    assert!(prometheus.is_some(), "the recorder installs");
    let server = RedisServer::start();
    let cache = Cache::new(
        CacheConfig::builder()
            .redis_url(server.url())
            .app_prefix("catalog")
            .metrics_log_interval(None)
            .build()
            .expect("config"),
    )
    .expect("cache");
    let limiter = RateLimiter::new(&cache, "api", limit, Duration::from_secs(60)).expect("limiter");
    let app = App {
        catalog: Catalog { db: db.clone() },
        cache: Some(cache.clone()),
        bypass: Arc::default(),
        limiter: Some(limiter),
        prometheus,
    };
    // Scoped, not installed: each test has its own cache.
    let router = router(app).layer(axum::middleware::from_fn(
        move |request, next: axum::middleware::Next| {
            let cache = cache.clone();
            async move { cache_runtime::with_cache(cache, next.run(request)).await }
        },
    ));
    Service {
        router,
        db,
        server,
        _file: file,
    }
}

async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, Vec<u8>, Option<String>) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-client-id", "test");
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, bytes.to_vec(), retry_after)
}

async fn get<T: serde::de::DeserializeOwned>(router: &Router, uri: &str) -> T {
    let (status, body, _) = call(router, Method::GET, uri, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_cached_and_writes_keep_them_right() {
    reads_cached_writes_invalidating(&service(10_000).await).await;
}

/// With Redis gone, pages and searches are answered by the database: the same products, in
/// one query each (nothing is written back while Redis cannot be read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_come_from_the_database_while_redis_is_down() {
    let mut service = service(10_000).await;
    let page_uri = "/categories/3/products?page=1";
    let search_uri = "/search?category=3&q=walnut";
    let page: Vec<Summary> = get(&service.router, page_uri).await;
    let search: Vec<Summary> = get(&service.router, search_uri).await;
    service.server.stop();
    let reads = service.db.reads();
    assert_eq!(get::<Vec<Summary>>(&service.router, page_uri).await, page);
    assert_eq!(
        get::<Vec<Summary>>(&service.router, search_uri).await,
        search
    );
    // The ids, then the products, for each.
    assert_eq!(service.db.reads(), reads + 4);
}

/// The same over PostgreSQL (`DATABASE_URL`, else the local server), in schema `catalog_test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_over_postgresql() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".to_owned());
    let db = Db::create_postgres(&url, "catalog_test", 2)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {}", e.0));
    reads_cached_writes_invalidating(&service_over(db, None, 10_000).await).await;
}

async fn reads_cached_writes_invalidating(service: &Service) {
    let router = &service.router;

    let first: Product = get(router, "/products/42").await;
    let queries = service.db.queries();
    let again: Product = get(router, "/products/42").await;
    assert_eq!(again, first);
    assert_eq!(
        service.db.queries(),
        queries,
        "the second read came from the cache"
    );

    let category = first.category;
    let page: Vec<Summary> = get(router, &format!("/categories/{category}/products")).await;
    let next_page: Vec<Summary> =
        get(router, &format!("/categories/{category}/products?page=1")).await;
    let stats: Value = get(router, &format!("/categories/{category}/stats")).await;
    let search: Vec<Summary> =
        get(router, &format!("/search?category={category}&q=%20LAMP%20")).await;
    // 42 is a "brass lamp": a walnut search cannot find it.
    let walnut: Vec<Summary> = get(router, &format!("/search?category={category}&q=walnut")).await;
    assert!(!page.is_empty() && !next_page.is_empty() && !search.is_empty() && !walnut.is_empty());
    assert!(walnut.iter().all(|s| s.id != 42) && page.iter().any(|s| s.id == 42));

    // A price change: the product is written through and its category's statistics go. Pages
    // and searches cache ids, so every one listing 42 shows the new price without a query.
    let (status, body, _) = call(
        router,
        Method::PUT,
        "/products/42/price",
        Some(r#"{"price_cents":1}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let reads = service.db.reads();
    let next_page_after: Vec<Summary> =
        get(router, &format!("/categories/{category}/products?page=1")).await;
    let walnut_after: Vec<Summary> =
        get(router, &format!("/search?category={category}&q=walnut")).await;
    assert_eq!((next_page_after, walnut_after), (next_page, walnut));
    let changed: Product = get(router, "/products/42").await;
    assert_eq!(
        (changed.price_cents, changed.version),
        (1, first.version + 1)
    );
    let page_after: Vec<Summary> = get(router, &format!("/categories/{category}/products")).await;
    let listed = page_after.iter().find(|s| s.id == 42).expect("listed");
    assert_eq!(listed.price_cents, 1, "the page shows the new price");
    let search_after: Vec<Summary> =
        get(router, &format!("/search?category={category}&q=lamp")).await;
    let found = search_after.iter().find(|s| s.id == 42).expect("found");
    assert_eq!(
        found.price_cents, 1,
        "the search shows it too, and the normalised query shares the key"
    );
    assert_eq!(
        service.db.reads(),
        reads,
        "no query: the product was written through, the pages and searches kept their ids"
    );
    let stats_after: Value = get(router, &format!("/categories/{category}/stats")).await;
    assert_eq!(
        stats_after["min_cents"], 1,
        "statistics recomputed: {stats_after} (was {stats})"
    );
    let (status, _, _) = call(router, Method::GET, "/search?category=1&q=%20", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a search needs a word");

    // A new product: listed on the category's last page, which was cached before.
    let last_page = format!("/categories/{category}/products?page=12");
    let before: Vec<Summary> = get(router, &last_page).await;
    let (status, body, _) = call(
        router,
        Method::POST,
        "/products",
        Some(&format!(
            r#"{{"category":{category},"name":"Copper lamp","description":"New.","price_cents":999}}"#
        )),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let created: Product = serde_json::from_slice(&body).expect("JSON");
    let read_back: Product = get(router, &format!("/products/{}", created.id)).await;
    assert_eq!(read_back, created);
    let after: Vec<Summary> = get(router, &last_page).await;
    assert!(before.iter().all(|s| s.id != created.id), "{before:?}");
    assert!(after.iter().any(|s| s.id == created.id), "{after:?}");

    // A category re-priced: every product of it, and its pages.
    let (status, _, _) = call(
        router,
        Method::POST,
        &format!("/categories/{category}/reprice"),
        Some(r#"{"percent":100}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let doubled: Product = get(router, "/products/42").await;
    assert_eq!(doubled.price_cents, 2);
    let page_after: Vec<Summary> = get(router, &format!("/categories/{category}/products")).await;
    // The page's first product is 42 itself (re-priced to 1 above); the second was untouched.
    assert_eq!((page_after[0].id, page_after[0].price_cents), (42, 2));
    assert_eq!(page_after[1].id, page[1].id);
    assert_eq!(page_after[1].price_cents, page[1].price_cents * 2);

    // A delete: gone (its absence cached), and no longer listed.
    let (status, _, _) = call(router, Method::DELETE, "/products/42", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let reads = service.db.reads();
    let (status, _, _) = call(router, Method::GET, "/products/42", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(service.db.reads(), reads, "the absence was written through");
    let page_after: Vec<Summary> = get(router, &format!("/categories/{category}/products")).await;
    assert!(page_after.iter().all(|s| s.id != 42), "{page_after:?}");

    // /metrics: the database's counters, and the cache's through the Prometheus exporter.
    let (status, body, _) = call(router, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).expect("text");
    let line = |start: &str, has: &str| {
        text.lines()
            .any(|l| l.starts_with(start) && l.contains(has))
    };
    assert!(
        line("catalog_database_queries_total{kind=\"read\"}", " "),
        "{text}"
    );
    assert!(line("cache_hits_total{", "entity=\"product\""), "{text}");
    assert!(
        line("cache_loader_calls_total{", "entity=\"search\""),
        "{text}"
    );
    // Every series the Grafana dashboard queries is there: the latency histogram as buckets
    // (a summary would leave its quantile panels empty).
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/grafana-dashboard.json"))
            .expect("dashboard JSON");
    let queried = dashboard_series(&dashboard);
    assert!(queried.len() >= 15, "{queried:?}");
    for series in &queried {
        assert!(
            line(&format!("{series}{{"), ""),
            "{series} missing from:\n{text}"
        );
    }
}

/// The `cache_*` series the dashboard's panels query.
fn dashboard_series(value: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let mut series = std::collections::BTreeSet::new();
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value.as_str()) {
                    ("expr", Some(expr)) => series.extend(metric_names(expr)),
                    _ => series.extend(dashboard_series(value)),
                }
            }
        }
        serde_json::Value::Array(items) => items
            .iter()
            .for_each(|v| series.extend(dashboard_series(v))),
        _ => {}
    }
    series
}

/// The `cache_…` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("cache_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_limit_gets_429_with_retry_after() {
    let service = service(3).await;
    for _ in 0..3 {
        let (status, _, _) = call(&service.router, Method::GET, "/products/1", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _, retry_after) = call(&service.router, Method::GET, "/products/1", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // 3 a minute: the next call passes in 20 s.
    let seconds: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((19..=20).contains(&seconds), "{seconds}");
}
