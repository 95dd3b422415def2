//! What the million-key benchmarks share: the configuration they measure, writers spread over
//! tasks, and a bystander client that records how long Redis kept it waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::CacheConfig;
use cache_tests::RedisServer;

pub const KEYS: u32 = 1_000_000;
pub const TASKS: u32 = 64;

/// The default configuration on `server` (no periodic metrics log).
pub fn config(server: &RedisServer) -> CacheConfig {
    CacheConfig::builder()
        .redis_url(server.url())
        .app_prefix("bench")
        .metrics_log_interval(None)
        .build()
        .expect("config")
}

/// Runs `work(i)` for every `i < count` that is a multiple of `step`, from [`TASKS`] tasks;
/// answers the time it took.
pub async fn from_tasks<F, Fut>(count: u32, step: u32, work: F) -> Duration
where
    F: Fn(u32) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let work = work.clone();
            tokio::spawn(async move {
                let mut i = task * step;
                while i < count {
                    work(i).await;
                    i += TASKS * step;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker");
    }
    started.elapsed()
}

/// A client that sends `PING` every 5 ms on its own connection and keeps its longest wait.
pub struct Pinger {
    stop: Arc<AtomicBool>,
    longest_us: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Pinger {
    pub fn start(server: &RedisServer) -> Self {
        let mut connection = server.connection().expect("connect");
        let stop = Arc::new(AtomicBool::new(false));
        let longest_us = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, longest_us) = (stop.clone(), longest_us.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let _: String = redis::cmd("PING").query(&mut connection).expect("PING");
                    let waited = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    longest_us.fetch_max(waited, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self {
            stop,
            longest_us,
            thread,
        }
    }

    pub fn stop(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("pinger");
        Duration::from_micros(self.longest_us.load(Ordering::Relaxed))
    }
}
