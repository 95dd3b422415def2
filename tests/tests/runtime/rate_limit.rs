use std::time::{Duration, Instant};

use cache_runtime::{RateLimiter, WhenUnavailable};

use crate::RedisServer;
use crate::cache;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_passes_among_64_concurrent_callers() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let limiter = RateLimiter::new(&cache, "api", 50, Duration::from_secs(60)).expect("limiter");
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.check("key-1").await })
        })
        .collect();
    let mut decisions = Vec::new();
    for call in calls {
        decisions.push(call.await.expect("task"));
    }
    assert!(decisions.iter().all(|d| d.decided_by_redis));
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 50);
    let mut remaining: Vec<u32> = decisions
        .iter()
        .filter(|d| d.allowed)
        .map(|d| d.remaining)
        .collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..50).collect::<Vec<u32>>(),
        "each allowed call saw one less"
    );
    // Another subject has its own allowance.
    assert!(limiter.check("key-2").await.allowed);
}

#[tokio::test]
async fn retry_after_says_when_the_next_call_passes() {
    let server = RedisServer::start();
    let cache = cache(&server);
    // 2 per second: one call every 500 ms once the burst is spent.
    let limiter = RateLimiter::new(&cache, "login", 2, Duration::from_secs(1)).expect("limiter");
    assert!(limiter.check("ann").await.allowed);
    assert!(limiter.check("ann").await.allowed);
    let started = Instant::now();
    let denied = limiter.check("ann").await;
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    assert!(
        denied.retry_after > Duration::from_millis(400)
            && denied.retry_after <= Duration::from_millis(500),
        "{:?}",
        denied.retry_after
    );
    // Well before it: still denied; just after it: allowed.
    let left = denied.retry_after.saturating_sub(started.elapsed());
    tokio::time::sleep(left.saturating_sub(Duration::from_millis(150))).await;
    assert!(!limiter.check("ann").await.allowed, "too early");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let allowed = limiter.check("ann").await;
    assert!(allowed.allowed, "{allowed:?}");
    // Back to the full allowance after the period: the key is gone.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(
        server.scan("test:ratelimit:*").is_empty(),
        "a subject at full allowance costs no key"
    );
}

#[tokio::test]
async fn while_redis_is_down_each_limiter_follows_its_policy() {
    let mut server = RedisServer::start();
    let cache = cache(&server);
    let open = RateLimiter::new(&cache, "search", 1, Duration::from_secs(60)).expect("limiter");
    let closed = RateLimiter::new(&cache, "payments", 1, Duration::from_secs(60))
        .expect("limiter")
        .when_unavailable(WhenUnavailable::Deny);
    assert!(open.check("ann").await.allowed);
    assert!(
        !open.check("ann").await.allowed,
        "over the limit while Redis answers"
    );
    server.stop();
    for _ in 0..3 {
        let open = open.check("ann").await;
        assert!(
            open.allowed && !open.decided_by_redis,
            "fail open: {open:?}"
        );
        let closed = closed.check("ann").await;
        assert!(
            !closed.allowed && !closed.decided_by_redis,
            "fail closed: {closed:?}"
        );
    }
}
