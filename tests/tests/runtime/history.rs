//! The history checker (`cache_tests::history`): instances in this process and in another run
//! random reads, writes with every kind of invalidation, ordered write-throughs, forced
//! refreshes and pattern invalidations while faults are injected; no read may return a version
//! older than a write whose invalidation completed before the read began.
//!
//! `HISTORY_SECS` (default 8) and `HISTORY_SEED` (default 1) set a run; BENCHMARKS.md has a
//! longer one.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_runtime::Cache;
use cache_tests::RedisServer;
use cache_tests::history::{self, Db, Op, Rng};

/// The bus delay a write made by another instance is allowed: far above the measured p99 on
/// loopback (milliseconds), for a debug build on a busy 2-core machine.
const BUS_DELAY_US: u64 = 50_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Injects faults into `server` until `until_us`; answers how many of each.
fn inject_faults(
    server: &mut RedisServer,
    dir: &std::path::Path,
    seed: u64,
    until_us: u64,
) -> BTreeMap<&'static str, u32> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut injected = BTreeMap::new();
    let snapshot = dir.join("dump.rdb");
    while history::now_us() + 1_000_000 < until_us {
        std::thread::sleep(Duration::from_millis(300 + rng.below(500)));
        let fault = match rng.below(6) {
            0 => {
                server.pause(Duration::from_millis(150));
                "client pause 150 ms"
            }
            1 => {
                let _: i64 =
                    server.query(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"));
                "subscribers killed"
            }
            2 => {
                server.pause(Duration::from_millis(500));
                "client pause 500 ms (breakers trip)"
            }
            3 => {
                let () = server.query(&redis::cmd("SAVE"));
                "snapshot taken"
            }
            4 => {
                let _ = std::fs::remove_file(&snapshot);
                server.restart();
                "restart without data"
            }
            _ if snapshot.exists() => {
                server.restart();
                "restart from an older snapshot"
            }
            _ => continue,
        };
        *injected.entry(fault).or_insert(0) += 1;
    }
    injected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_returns_a_version_older_than_a_completed_invalidation() {
    let seed = env_number("HISTORY_SEED", 1);
    let secs = env_number("HISTORY_SECS", 8);
    let dir = std::env::temp_dir().join(format!("cache-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut server = RedisServer::start_with_args(&["--dir", dir.to_str().expect("utf-8")]);
    let db_server = RedisServer::start();
    let db = Db::connect(&db_server.url()).await.expect("db");
    let until = history::now_us() + secs * 1_000_000;

    let other = Command::new(env!("CARGO_BIN_EXE_history_client"))
        .args([&server.url(), &db_server.url()])
        .args([
            (seed + 1000).to_string(),
            (secs * 1000).to_string(),
            "2".to_owned(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn history_client");

    let log = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for n in 0..3u64 {
        let cache = Cache::new(history::config(&server.url())).expect("cache");
        for worker in 0..2 {
            let job = history::run_worker(
                cache.clone(),
                format!("here-{n}"),
                db.clone(),
                seed.wrapping_mul(31).wrapping_add(n * 2 + worker),
                until,
                Arc::clone(&log),
            );
            workers.push(tokio::spawn(job));
        }
    }
    let faults = tokio::task::spawn_blocking(move || {
        let injected = inject_faults(&mut server, &dir, seed, until);
        let _ = std::fs::remove_dir_all(&dir);
        (injected, server)
    });
    for worker in workers {
        worker.await.expect("worker");
    }
    let (injected, _server) = faults.await.expect("faults");
    let output = other.wait_with_output().expect("history_client");
    assert!(output.status.success(), "history_client failed");

    let mut ops = log.lock().expect("log").clone();
    ops.extend(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(Op::parse),
    );
    let reads = ops
        .iter()
        .filter(|op| matches!(op, Op::Read { .. }))
        .count();
    let writes = ops.len() - reads;
    let violations = history::check(&ops, BUS_DELAY_US);
    eprintln!(
        "history seed {seed}, {secs} s: {} operations checked ({reads} reads, {writes} writes), faults {injected:?}, {} violations",
        ops.len(),
        violations.len()
    );
    for violation in violations.iter().take(5) {
        eprintln!("  read {}\n    after {}", violation.read, violation.newer);
    }
    assert!(
        reads > 500 && writes > 100,
        "too few operations to say anything"
    );
    assert!(injected.len() >= 3, "too few kinds of fault: {injected:?}");
    assert!(violations.is_empty(), "{} stale reads", violations.len());
}
