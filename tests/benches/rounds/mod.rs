//! What the throughput comparisons share: tasks calling a setup in a loop, rounds interleaved
//! across setups, and a table of medians with their ratios to the first setup.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::product::Product;

/// The task counts every table has a column for.
pub const TASK_COUNTS: [usize; 3] = [1, 64, 256];

/// One way of reading product `id`.
pub trait Reader: Clone + Send + Sync + 'static {
    fn read(&self, id: u64) -> impl Future<Output = Product> + Send;
}

/// What a user writes by hand: `GET` of the raw key and a postcard decode, on `conn` (one
/// Redis's multiplexed connection, or redis-rs's cluster connection).
pub async fn hand_written<C: redis::aio::ConnectionLike + Clone>(conn: &C, id: u64) -> Product {
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(format!("raw:product:{id}"))
        .query_async(&mut conn.clone())
        .await
        .expect("GET");
    postcard::from_bytes(&bytes).expect("decode")
}

/// Calls per second of `tasks` tasks calling `setup` in a loop over `keys` ids for `round`.
pub async fn throughput<R: Reader>(setup: &R, keys: u64, tasks: usize, round: Duration) -> f64 {
    let calls = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + round;
    let handles: Vec<_> = (0..tasks as u64)
        .map(|task| {
            let (setup, calls) = (setup.clone(), calls.clone());
            tokio::spawn(async move {
                let mut id = task * 7919 % keys;
                let mut done = 0;
                while Instant::now() < deadline {
                    std::hint::black_box(setup.read(id).await);
                    id = (id + 1) % keys;
                    done += 1;
                }
                calls.fetch_add(done, Ordering::Relaxed);
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task");
    }
    calls.load(Ordering::Relaxed) as f64 / round.as_secs_f64()
}

/// `rounds` rounds of every setup at every task count, the order rotating each round so drift
/// on a shared machine hits every setup alike: `[setup][task count]` → calls/s per round.
pub async fn interleaved<R: Reader>(
    setups: &[R],
    keys: u64,
    rounds: usize,
    round: Duration,
) -> Vec<Vec<Vec<f64>>> {
    let mut figures = vec![vec![Vec::new(); TASK_COUNTS.len()]; setups.len()];
    for r in 0..rounds {
        for (t, &tasks) in TASK_COUNTS.iter().enumerate() {
            for s in 0..setups.len() {
                let s = (s + r) % setups.len();
                figures[s][t].push(throughput(&setups[s], keys, tasks, round).await);
            }
        }
    }
    figures
}

/// A markdown table: per setup and task count, the median rate and the median of the
/// per-round ratios to the first setup.
pub fn print_table(unit: &str, names: &[&str], figures: &[Vec<Vec<f64>>]) {
    let header: Vec<String> = TASK_COUNTS.iter().map(|t| format!("{t} tasks")).collect();
    println!("| {unit} | {} |", header.join(" | "));
    println!("| --- |{}", " --- |".repeat(TASK_COUNTS.len()));
    for (s, name) in names.iter().enumerate() {
        let cells: Vec<String> = (0..TASK_COUNTS.len())
            .map(|t| {
                let mut rates = figures[s][t].clone();
                let mut ratios: Vec<f64> = figures[s][t]
                    .iter()
                    .zip(&figures[0][t])
                    .map(|(own, base)| own / base)
                    .collect();
                format!(
                    "{:.1}k ({:.2}×)",
                    median(&mut rates) / 1_000.0,
                    median(&mut ratios)
                )
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User and system CPU seconds of a process so far (`/proc/<pid>/stat`, in clock ticks of
/// 10 ms: read over seconds, not per call).
#[allow(
    dead_code,
    reason = "the cluster bench shares this module and reads no CPU time"
)]
pub fn cpu_time(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("ticks") / 100.0;
    (ticks(11), ticks(12))
}
