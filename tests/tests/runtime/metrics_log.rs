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
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let server = RedisServer::start();

    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
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
    });

    let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
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
