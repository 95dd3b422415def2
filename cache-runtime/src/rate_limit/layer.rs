//! [`RateLimiter`] as a tower layer (feature `tower`): a request over its subject's limit is
//! answered `429 Too Many Requests` with `Retry-After`, without reaching the service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use super::RateLimiter;

/// Limits the requests of each subject, as `subject` names it (a client id header, an API key,
/// the peer address).
///
/// ```ignore
/// let limiter = RateLimiter::new(&cache, "api", 100, Duration::from_secs(60))?;
/// let app = Router::new()
///     .route("/products/{id}", get(product))
///     .layer(RateLimitLayer::new(limiter, |request: &Request<Body>| {
///         request.headers().get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("anonymous").to_owned()
///     }));
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer<F> {
    limiter: RateLimiter,
    subject: F,
}

impl<F> RateLimitLayer<F> {
    pub fn new(limiter: RateLimiter, subject: F) -> Self {
        Self { limiter, subject }
    }
}

impl<S, F: Clone> Layer<S> for RateLimitLayer<F> {
    type Service = RateLimit<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct RateLimit<S, F> {
    inner: S,
    limiter: RateLimiter,
    subject: F,
}

impl<S, F, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, F>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    F: Fn(&Request<ReqBody>) -> String,
    ReqBody: Send + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let subject = (self.subject)(&request);
        let limiter = self.limiter.clone();
        // The service that was polled ready serves this request; a clone waits for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let decision = limiter.check(&subject).await;
            if decision.allowed {
                return inner.call(request).await;
            }
            let mut response = Response::new(ResBody::default());
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            // Whole seconds, rounded up: a client that waits that long is let through.
            let seconds =
                decision.retry_after.as_secs() + u64::from(decision.retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            Ok(response)
        })
    }
}
