//! `cachectl keys` and `cachectl ttl` over 1,000,000 keys, and what another client of the same
//! Redis waits meanwhile: a probe sends `PING` in a loop, first alone (baseline), then while the
//! command runs; the table compares the probe's latencies.
//!
//! `cargo bench -p cachectl --bench keys_at_scale` (`SCALE_KEYS` to change the 1,000,000).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cache_tests::RedisServer;

/// Latencies of `PING`s sent back to back until `stop` is set.
fn probe(server: &RedisServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    let mut conn = server.connection().expect("probe connection");
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let _: String = redis::cmd("PING").query(&mut conn).expect("PING");
            samples.push(started.elapsed());
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.sort();
        samples
    })
}

fn summary(samples: &[Duration]) -> String {
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!(
        "{:?} / {:?} / {:?} ({} pings)",
        at(0.5),
        at(0.99),
        samples[samples.len() - 1],
        samples.len()
    )
}

fn main() {
    let keys: u64 = std::env::var("SCALE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let server = RedisServer::start_with_args(&["--enable-debug-command", "yes"]);
    let mut conn = server.connection().expect("connect");
    // Three namespaces: 60 % product, 30 % product_list (v1), 10 % product (v2).
    for (share, prefix) in [
        (6, "shop:v1:product"),
        (3, "shop:v1:product_list"),
        (1, "shop:v2:product"),
    ] {
        let () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(keys * share / 10)
            .arg(prefix)
            .arg(200)
            .query(&mut conn)
            .expect("populate");
    }
    let count: u64 = redis::cmd("DBSIZE").query(&mut conn).expect("dbsize");
    println!("{count} keys of 200 bytes in 3 namespaces\n");
    println!("| command | took | probe PING p50 / p99 / max meanwhile |");
    println!("| --- | --- | --- |");

    let stop = Arc::new(AtomicBool::new(false));
    let baseline = probe(&server, stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    println!(
        "| (none: baseline, 3 s) | - | {} |",
        summary(&baseline.join().expect("probe"))
    );

    for args in [vec!["keys"], vec!["ttl"]] {
        let stop = Arc::new(AtomicBool::new(false));
        let during = probe(&server, stop.clone());
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_cachectl"))
            .args(["--url", &server.url(), "--app", "shop"])
            .args(&args)
            .output()
            .expect("cachectl");
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "| `cachectl {}` | {took:.1?} | {} |",
            args.join(" "),
            summary(&during.join().expect("probe"))
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
