//! The demo's load: clients calling the service in a loop, reads Zipf-distributed over products
//! and categories, 5 % price changes spread over the whole catalog, every product read checked
//! against the last committed write.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

use crate::db::{ADJECTIVES, CATEGORIES, PRODUCTS, Product};

/// Ranks drawn with probability ∝ 1 / rank (Zipf, s = 1).
#[derive(Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += 1.0 / rank as f64;
            cdf.push(total);
        }
        for p in &mut cdf {
            *p /= total;
        }
        Self { cdf }
    }

    pub fn sample(&self) -> usize {
        let u: f64 = rand::random();
        self.cdf.partition_point(|p| *p < u).min(self.cdf.len() - 1)
    }
}

/// What one phase measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub latencies_us: Vec<u32>,
    pub stale_reads: u64,
    pub errors: u64,
    pub limited: u64,
    pub elapsed: Duration,
}

/// Shared between the clients of a phase.
pub struct Load {
    pub router: Router,
    pub products: Zipf,
    pub categories: Zipf,
    /// The last committed version of each product, as the writes' responses said.
    pub committed: Vec<AtomicU64>,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load").finish_non_exhaustive()
    }
}

impl Load {
    pub fn new(router: Router) -> Self {
        Self {
            router,
            products: Zipf::new(PRODUCTS as usize),
            categories: Zipf::new(CATEGORIES as usize),
            committed: (0..PRODUCTS).map(|_| AtomicU64::new(1)).collect(),
        }
    }

    /// Hot ranks spread over the id space (7919 is prime to the product count).
    fn product_id(&self) -> u64 {
        self.products.sample() as u64 * 7919 % PRODUCTS
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<String>,
        client: usize,
    ) -> Option<(StatusCode, Vec<u8>)> {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-client-id", format!("client-{client}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .ok()?;
        let response = self.router.clone().oneshot(request).await.ok()?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .ok()?;
        Some((status, bytes.to_vec()))
    }

    /// One request of the mix; `Err` marks a stale read.
    async fn one(&self, client: usize, outcome: &mut Outcome) {
        let roll: f64 = rand::random();
        let started = Instant::now();
        let result = if roll < 0.05 {
            // Prices change across the whole catalog (merchants, feeds); shoppers read the
            // popular products.
            let id = rand::random::<u64>() % PRODUCTS;
            let price = 500 + (rand::random::<u32>() % 100_000);
            let answer = self
                .call(
                    Method::PUT,
                    &format!("/products/{id}/price"),
                    Some(format!("{{\"price_cents\":{price}}}")),
                    client,
                )
                .await;
            if let Some((StatusCode::OK, body)) = &answer
                && let Ok(written) = serde_json::from_slice::<serde_json::Value>(body)
                && let Some(version) = written["version"].as_u64()
            {
                self.committed[id as usize].fetch_max(version, Ordering::Relaxed);
            }
            answer
        } else if roll < 0.75 {
            let id = self.product_id();
            let known = self.committed[id as usize].load(Ordering::Relaxed);
            let answer = self
                .call(Method::GET, &format!("/products/{id}"), None, client)
                .await;
            if let Some((StatusCode::OK, body)) = &answer
                && let Ok(product) = serde_json::from_slice::<Product>(body)
                && product.version < known
            {
                outcome.stale_reads += 1;
            }
            answer
        } else if roll < 0.90 {
            let category = self.categories.sample();
            let page = rand::random::<u32>() % 5;
            self.call(
                Method::GET,
                &format!("/categories/{category}/products?page={page}"),
                None,
                client,
            )
            .await
        } else if roll < 0.97 {
            let category = self.categories.sample();
            let word = ADJECTIVES[rand::random::<u32>() as usize % ADJECTIVES.len()];
            // Two spellings of one search: the normalised query is the cache key.
            let q = if rand::random::<bool>() {
                word.to_uppercase()
            } else {
                format!("  {word} ")
            };
            self.call(
                Method::GET,
                &format!("/search?category={category}&q={}", q.replace(' ', "%20")),
                None,
                client,
            )
            .await
        } else {
            let category = self.categories.sample();
            self.call(
                Method::GET,
                &format!("/categories/{category}/stats"),
                None,
                client,
            )
            .await
        };
        outcome.requests += 1;
        outcome
            .latencies_us
            .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        match result {
            Some((StatusCode::TOO_MANY_REQUESTS, _)) => outcome.limited += 1,
            Some((status, _)) if status.is_success() || status == StatusCode::NOT_FOUND => {}
            _ => outcome.errors += 1,
        }
    }
}

/// Runs `clients` clients for `duration`, with a progress line on a terminal.
pub async fn run(load: Arc<Load>, clients: usize, duration: Duration, label: &str) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (load, done) = (load.clone(), done.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                while Instant::now() < deadline {
                    load.one(client, &mut outcome).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                outcome
            })
        })
        .collect();
    let progress = std::io::stderr().is_terminal();
    while progress && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let elapsed = started.elapsed().min(duration);
        let filled = (elapsed.as_secs_f64() / duration.as_secs_f64() * 30.0) as usize;
        eprint!(
            "\r{label:<14} [{}{}] {:>4.1}s {:>8} requests",
            "#".repeat(filled),
            " ".repeat(30 - filled.min(30)),
            elapsed.as_secs_f64(),
            done.load(Ordering::Relaxed)
        );
        let _ = std::io::stderr().flush();
    }
    let mut total = Outcome::default();
    for task in tasks {
        if let Ok(outcome) = task.await {
            total.requests += outcome.requests;
            total.stale_reads += outcome.stale_reads;
            total.errors += outcome.errors;
            total.limited += outcome.limited;
            total.latencies_us.extend(outcome.latencies_us);
        }
    }
    if progress {
        eprintln!();
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    total
}

impl Outcome {
    pub fn percentile(&self, q: f64) -> Duration {
        let at = ((self.latencies_us.len().max(1) - 1) as f64 * q) as usize;
        Duration::from_micros(u64::from(self.latencies_us.get(at).copied().unwrap_or(0)))
    }

    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}
