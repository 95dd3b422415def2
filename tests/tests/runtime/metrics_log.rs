use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::{Cache, Ttl};

use crate::{CountingLoader, config};
use cache_tests::RedisServer;

/// Collects everything the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_periodic_info_line_reports_each_active_entitys_hit_ratio() {
    let server = RedisServer::start();
    let (log, ()) = logged(tracing::Level::INFO, false, async {
        let cache = Cache::new(
            config(&server)
                .metrics_log_interval(Some(Duration::from_secs(1)))
                .build()
                .expect("config"),
        )
        .expect("cache");
        let key = cache.entity("product").expect("entity").key(&1u8);
        cache.entity("idle").expect("entity");
        let loader = CountingLoader::default();
        for _ in 0..4 {
            cache
                .get_or_set(&key, Ttl::Short, || loader.load(1u8))
                .await
                .expect("value");
        }
        tokio::time::sleep(Duration::from_millis(1300)).await;
    });
    let line = log
        .lines()
        .find(|l| l.contains("cache stats"))
        .unwrap_or_else(|| panic!("no stats line in:\n{log}"));
    assert!(line.contains("entity=product"), "{line}");
    assert!(line.contains("hit_ratio=75.0%"), "{line}");
    assert!(line.contains("served_without_source=75.0%"), "{line}");
    assert!(
        line.contains("hits=3 coalesced=0 misses=1 loader_calls=1"),
        "{line}"
    );
    assert!(
        !log.contains("entity=idle"),
        "idle entities stay quiet:\n{log}"
    );
}

/// Runs `body` on a current-thread runtime with logs up to `level` captured (and spans'
/// closings, with their fields, when `spans`); answers the log and what `body` returned.
pub(crate) fn logged<T>(
    level: tracing::Level,
    spans: bool,
    body: impl std::future::Future<Output = T>,
) -> (String, T) {
    let captured = Captured::default();
    let sink = captured.clone();
    let span_events = match spans {
        true => tracing_subscriber::fmt::format::FmtSpan::CLOSE,
        false => tracing_subscriber::fmt::format::FmtSpan::NONE,
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(level)
        .with_span_events(span_events)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body)
    });
    let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    (log, out)
}

/// The WARN log of `body`.
fn warnings_of(body: impl std::future::Future<Output = ()>) -> String {
    logged(tracing::Level::WARN, false, body).0
}

#[test]
fn the_breaker_says_why_it_opened_once_and_without_the_password() {
    let server = RedisServer::start_with_password("s3cret-pass");
    let wrong = format!("redis://:not-the-s3cret@127.0.0.1:{}", server.port());
    let log = warnings_of(async {
        let cache =
            Cache::new(config(&server).redis_url(wrong).build().expect("config")).expect("cache");
        let key = cache.entity("product").expect("entity").key(&1u8);
        for _ in 0..20 {
            let _ = cache.get::<u8>(&key).await;
        }
    });
    let opened: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("circuit breaker opened"))
        .collect();
    assert_eq!(opened.len(), 1, "once per transition:\n{log}");
    assert!(opened[0].contains("cause="), "{}", opened[0]);
    assert!(opened[0].contains("credentials"), "{}", opened[0]);
    assert!(!log.contains("not-the-s3cret"), "{log}");
}

#[test]
fn an_outage_logs_its_backlog_once_not_once_per_invalidation() {
    let mut server = RedisServer::start();
    let log = warnings_of(async {
        let cache = Cache::new(
            config(&server)
                .operation_timeout(Duration::from_millis(50))
                .build()
                .expect("config"),
        )
        .expect("cache");
        let products = cache.entity("product").expect("entity");
        server.stop();
        for id in 0..200u32 {
            assert!(cache.invalidate_id(&products, &id).await.is_err());
        }
        assert_eq!(cache.pending_invalidations(), 200);
    });
    let backlog_lines = log.lines().filter(|l| l.contains("replay")).count();
    assert_eq!(backlog_lines, 1, "one WARN when the backlog starts:\n{log}");
    assert!(log.lines().count() <= 3, "no flood:\n{log}");
}

#[test]
fn each_read_runs_in_a_span_saying_where_its_answer_came_from() {
    let server = RedisServer::start();
    let (output, ()) = logged(tracing::Level::DEBUG, true, async {
        let cache = Cache::new(config(&server).build().expect("config")).expect("cache");
        let key = cache.entity("product").expect("entity").key(&1u8);
        let loader = CountingLoader::default();
        for _ in 0..2 {
            cache
                .get_or_set(&key, Ttl::Short, || loader.load(1u8))
                .await
                .expect("value");
        }
    });
    let closed: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("cache_read{") && line.contains("close"))
        .collect();
    assert_eq!(closed.len(), 2, "one span per read:\n{output}");
    for (line, (tier, outcome)) in closed.iter().zip([("source", "miss"), ("redis", "hit")]) {
        assert!(line.contains(r#"entity="product""#), "{line}");
        assert!(line.contains(&format!(r#"tier="{tier}""#)), "{line}");
        assert!(line.contains(&format!(r#"outcome="{outcome}""#)), "{line}");
    }
}

#[test]
fn undecodable_values_warn_once_per_entity_and_are_all_counted() {
    let server = RedisServer::start();
    let (output, failures) = logged(tracing::Level::INFO, false, async {
        let cache = Cache::new(config(&server).build().expect("config")).expect("cache");
        let products = cache.entity("product").expect("entity");
        // A byte where the reader now expects a text of that length: every key fails to
        // decode once (the bytes run out), then holds the new shape.
        for id in 0..5u8 {
            cache
                .set(&products.key(&id), &200u8, Ttl::Short)
                .await
                .expect("set");
        }
        for id in 0..5u8 {
            let loader = CountingLoader::default();
            let value = cache
                .get_or_set(&products.key(&id), Ttl::Short, || {
                    loader.load("new shape".to_owned())
                })
                .await
                .expect("value");
            assert_eq!((value.as_str(), loader.calls()), ("new shape", 1));
        }
        products.metrics().decode_failures
    });
    let warnings = output
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("undecodable cached value"))
        .count();
    assert_eq!(warnings, 1, "{output}");
    assert_eq!(failures, 5, "every failure is counted");
}

/// Redis gone for 2 s while a service keeps reading: a handful of lines (the breaker opening
/// and closing, nothing per probe), and every read the source answered counted as a fallback,
/// as the runbook says.
#[test]
fn a_two_second_outage_logs_a_handful_of_lines_and_counts_its_fallbacks() {
    let mut server = RedisServer::start();
    let (log, (fallbacks, reads)) = logged(tracing::Level::INFO, false, async {
        let cache =
            cache_runtime::Cache::new(config(&server).build().expect("config")).expect("cache");
        let products = cache.entity("product").expect("entity");
        let read = |id: u32| {
            let (cache, key) = (cache.clone(), products.key(&id));
            async move {
                cache
                    .get_or_set(&key, Ttl::Short, || async { Ok::<_, String>(id) })
                    .await
            }
        };
        assert_eq!(read(0).await, Ok(0));
        server.stop();
        // An invalidation made during the outage waits for replay, and keeps reads from Redis.
        assert!(cache.invalidate_id(&products, &0u32).await.is_err());
        let before = products.metrics();
        let started = std::time::Instant::now();
        let mut reads = 0;
        while started.elapsed() < Duration::from_secs(2) {
            reads += 1;
            assert_eq!(read(reads).await, Ok(reads), "the source answers");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let during = products.metrics().since(&before);
        server.restart();
        let back = std::time::Instant::now();
        while cache.breaker_state() != cache_runtime::BreakerState::Closed {
            assert!(back.elapsed() < Duration::from_secs(10), "never closed");
            let _ = read(0).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (during.fallbacks, u64::from(reads))
    });
    assert_eq!(fallbacks, reads, "every read during the outage:\n{log}");
    assert!(log.lines().count() <= 5, "a handful of lines:\n{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains("breaker opened")).count(),
        1,
        "{log}"
    );
    assert!(log.contains("breaker closed"), "{log}");
}

#[test]
fn a_batch_loader_answering_ids_it_was_not_asked_for_is_warned_about_once_per_call() {
    let server = RedisServer::start();
    let (log, ()) = logged(tracing::Level::WARN, false, async {
        let cache = Cache::new(config(&server).build().expect("config")).expect("cache");
        let products = cache.entity("product").expect("entity");
        let options = cache_runtime::ReadOptions::new(Ttl::Short);
        let values = cache
            .get_or_set_many(&products, &[1u64, 2], options, |_| async {
                let answered = [(1u64, 10u32), (2, 20), (7, 70), (8, 80)];
                Ok::<_, std::io::Error>(
                    answered
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
            })
            .await
            .expect("batch");
        assert_eq!(values, [Some(10), Some(20)]);
    });
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("not asked for"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("entity=\"product\"") && warnings[0].contains("unasked=2"),
        "{log}"
    );
}
