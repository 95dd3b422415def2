use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_runtime::{Cache, Ttl};

use crate::RedisServer;
use crate::cache;

/// `n` concurrent `get_or_set` calls on one key whose loader takes `load_time`; returns the
/// loader calls and every caller's result.
async fn storm(
    cache: &Cache,
    n: usize,
    load_time: Duration,
    fail: bool,
) -> (usize, Vec<Result<String, String>>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let key = cache.entity("hot").expect("entity").key("cold-key");
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (cache, key, calls) = (cache.clone(), key.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set(&key, Ttl::Short, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(load_time).await;
                        if fail {
                            Err("source down".to_owned())
                        } else {
                            Ok("value".to_owned())
                        }
                    })
                    .await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    (calls.load(Ordering::SeqCst), results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_on_one_key_make_one_loader_call() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let (calls, results) = storm(&cache, 1000, Duration::from_millis(200), false).await;
    assert_eq!(calls, 1);
    assert!(results.iter().all(|r| r.as_deref() == Ok("value")));
    let metrics = cache.entity("hot").expect("entity").metrics();
    assert_eq!(metrics.loader_calls, 1);
    assert_eq!(metrics.coalesced, 999);
    assert_eq!(
        metrics.served_without_source_ratio(),
        Some(0.999),
        "the hit ratio is 0 (Redis had nothing), yet 999 of 1,000 callers spared the source"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_also_shields_the_source_while_redis_is_down() {
    let mut server = RedisServer::start();
    let cache = cache(&server);
    server.stop();
    let (calls, results) = storm(&cache, 1000, Duration::from_millis(200), false).await;
    assert_eq!(calls, 1);
    assert!(results.iter().all(|r| r.as_deref() == Ok("value")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_fails_each_waiting_caller_gets_its_own_loaders_answer() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let (calls, results) = storm(&cache, 50, Duration::from_millis(100), true).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e == "source down"))
    );
    assert!(calls > 1, "errors are not shared: {calls}");
    assert!(server.cached_keys("*").is_empty(), "errors are not cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_hands_over_and_nobody_hangs() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let key = cache.entity("hot").expect("entity").key(&1u8);
    let leader = {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move {
            cache
                .get_or_set(&key, Ttl::Short, || async {
                    std::future::pending::<()>().await;
                    Ok::<_, String>("never".to_owned())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // the leader is loading
    let follower = {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move {
            cache
                .get_or_set(&key, Ttl::Short, || async {
                    Ok::<_, String>("taken over".to_owned())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.abort();
    let answer = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the follower did not hang")
        .expect("task");
    assert_eq!(answer.as_deref(), Ok("taken over"));
}

#[derive(Debug, Clone, PartialEq)]
struct SourceDown;

static FAILING_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cache_runtime::cached(entity = "failing", key = "{id}")]
async fn failing(id: u32) -> Result<String, SourceDown> {
    FAILING_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = id;
    Err(SourceDown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_macros_share_a_cloneable_error_with_the_callers_that_waited() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let results = cache_runtime::with_cache(cache.clone(), async {
        let calls: Vec<_> = (0..100).map(|_| failing(1)).collect();
        futures_join_all(calls).await
    })
    .await;
    assert!(results.iter().all(|r| *r == Err(SourceDown)));
    assert_eq!(FAILING_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.entity("failing").expect("entity").metrics().coalesced,
        99
    );
}

/// Polls every future to completion inside the current task (so the scoped cache applies).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
