//! The HTTP service: JSON endpoints over the repository, health and metrics, and a rate limit
//! per client.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cache_runtime::{Cache, RateLimitLayer, RateLimiter};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::json;
use tower::util::option_layer;

use crate::db::{DbError, NewProduct};
use crate::repo::Catalog;
use crate::search::Search;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct App {
    pub catalog: Catalog,
    pub cache: Option<Cache>,
    /// Reads skip the cache (the demo's first half).
    pub bypass: Arc<AtomicBool>,
    pub limiter: Option<RateLimiter>,
    /// Renders /metrics when a Prometheus recorder is installed ([`install_prometheus`]).
    pub prometheus: Option<PrometheusHandle>,
}

/// Installs the process's Prometheus recorder (before the `Cache` is built, so its latency
/// histogram is recorded too); `None`, with a warning, if another recorder is installed.
pub fn install_prometheus() -> Option<PrometheusHandle> {
    // Without buckets the exporter renders the latency histogram as a summary, and the
    // dashboard's quantiles (from `_bucket`) stay empty.
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(cache_runtime::REDIS_SECONDS.to_owned()),
            cache_runtime::REDIS_SECONDS_BUCKETS,
        )
        .and_then(PrometheusBuilder::install_recorder)
        .inspect_err(|error| tracing::warn!(%error, "no Prometheus recorder: /metrics shows the counters only"))
        .ok()
}

impl App {
    /// `read`, through the cache unless bypassed.
    async fn read<T>(&self, read: impl Future<Output = T>) -> T {
        match self.bypass.load(Ordering::Relaxed) {
            true => cache_runtime::uncached(read).await,
            false => read.await,
        }
    }
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/products", post(create))
        .route("/products/{id}", get(product).delete(delete))
        .route("/products/{id}/price", put(set_price))
        .route("/categories/{id}/products", get(listing))
        .route("/categories/{id}/stats", get(stats))
        .route("/categories/{id}/reprice", post(reprice))
        .route("/search", get(search))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(option_layer(
            app.limiter
                .clone()
                .map(|limiter| RateLimitLayer::new(limiter, client_id)),
        ))
        .with_state(app)
}

fn db_error(error: DbError) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": error.0})),
    )
        .into_response()
}

async fn product(State(app): State<App>, Path(id): Path<u64>) -> Response {
    match app.read(app.catalog.product(id)).await {
        Ok(Some(product)) => Json(product).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => db_error(error),
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    page: u32,
}

async fn listing(
    State(app): State<App>,
    Path(category): Path<u32>,
    Query(q): Query<Page>,
) -> Response {
    match app.read(app.catalog.listing(category, q.page)).await {
        Ok(page) => Json(page).into_response(),
        Err(error) => db_error(error),
    }
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    category: u32,
    q: String,
}

async fn search(State(app): State<App>, Query(q): Query<SearchQuery>) -> Response {
    let Some(search) = Search::parse(&q.q) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "q must hold at least one word"})),
        )
            .into_response();
    };
    match app.read(app.catalog.search(q.category, &search)).await {
        Ok(found) => Json(found).into_response(),
        Err(error) => db_error(error),
    }
}

async fn stats(State(app): State<App>, Path(category): Path<u32>) -> Response {
    match app.read(app.catalog.price_stats(category)).await {
        Ok(stats) => Json(stats).into_response(),
        Err(error) => db_error(error),
    }
}

async fn create(State(app): State<App>, Json(new): Json<NewProduct>) -> Response {
    match app.catalog.create(new).await {
        Ok(product) => (StatusCode::CREATED, Json(product)).into_response(),
        Err(error) => db_error(error),
    }
}

#[derive(Debug, Deserialize)]
struct NewPrice {
    price_cents: u32,
}

async fn set_price(
    State(app): State<App>,
    Path(id): Path<u64>,
    Json(body): Json<NewPrice>,
) -> Response {
    match app.catalog.set_price(id, body.price_cents).await {
        Ok(Some(product)) => Json(json!({"id": id, "version": product.version})).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => db_error(error),
    }
}

#[derive(Debug, Deserialize)]
struct Reprice {
    percent: i32,
}

async fn reprice(
    State(app): State<App>,
    Path(category): Path<u32>,
    Json(body): Json<Reprice>,
) -> Response {
    match app.catalog.reprice(category, body.percent).await {
        Ok(changed) => Json(json!({"category": category, "changed": changed})).into_response(),
        Err(error) => db_error(error),
    }
}

async fn delete(State(app): State<App>, Path(id): Path<u64>) -> Response {
    match app.catalog.delete(id).await {
        Ok(Some(category)) => {
            app.catalog.category_changed(category).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => db_error(error),
    }
}

async fn health(State(app): State<App>) -> Response {
    match &app.cache {
        Some(cache) => Json(json!({
            "cache": "on",
            "breaker": format!("{:?}", cache.breaker_state()),
            "invalidation_bus_connected": cache.invalidation_bus_connected(),
            "pending_invalidations": cache.pending_invalidations(),
        }))
        .into_response(),
        None => Json(json!({"cache": "off: no Redis"})).into_response(),
    }
}

/// Prometheus text: the database's query counters, then every cache metric (docs/metrics.md)
/// through the exporter, or the per-entity counters when no recorder is installed.
async fn metrics(State(app): State<App>) -> Response {
    let db = &app.catalog.db;
    let mut out = format!(
        "# TYPE catalog_database_queries_total counter\n\
         catalog_database_queries_total{{kind=\"read\"}} {}\n\
         catalog_database_queries_total{{kind=\"write\"}} {}\n",
        db.reads(),
        db.writes()
    );
    match &app.prometheus {
        Some(handle) => {
            if let Some(cache) = &app.cache {
                cache.export_metrics();
            }
            out.push_str(&handle.render());
        }
        None => counters(app.cache.as_ref(), &mut out),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn counters(cache: Option<&Cache>, out: &mut String) {
    for m in cache.iter().flat_map(|c| c.metrics()) {
        for (name, value) in [
            ("hits_total{tier=\"redis\"", m.hits),
            ("hits_total{tier=\"local\"", m.local_hits),
            ("misses_total{", m.misses),
            ("loader_calls_total{", m.loader_calls),
            ("coalesced_total{", m.coalesced),
            ("fallbacks_total{", m.fallbacks),
        ] {
            let sep = if name.ends_with('{') { "" } else { "," };
            out.push_str(&format!(
                "cache_{name}{sep}entity=\"{}\"}} {value}\n",
                m.entity
            ));
        }
    }
}

/// 429 with `Retry-After` once a client (`x-client-id`, else everyone together) is over its
/// limit.
/// Who a request counts against: its `x-client-id` header (the demo's clients send one).
fn client_id(request: &Request) -> String {
    request
        .headers()
        .get("x-client-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned()
}
