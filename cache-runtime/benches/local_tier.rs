//! In-process tier candidates: moka (sync) and quick_cache, holding 1 KiB encoded values under
//! keys like the cache's. Prints the resident memory each takes for 100,000 entries, then
//! criterion's hit and insert timings. The choice is recorded in BENCHMARKS.md.
//!
//! `cargo bench -p cache-runtime --bench local_tier`

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};

const ENTRIES: usize = 10_000;
const VALUE: usize = 1024;

fn key(i: usize) -> String {
    format!("shop:v3:product:{i}")
}

fn value() -> Arc<[u8]> {
    Arc::from(vec![7u8; VALUE])
}

/// Resident set size in KiB, from /proc/self/statm (pages of 4 KiB).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

fn memory() {
    const N: usize = 100_000;
    let before = rss_kib();
    let moka = moka::sync::Cache::<String, Arc<[u8]>>::new(N as u64);
    for i in 0..N {
        moka.insert(key(i), Arc::from(vec![7u8; VALUE]));
    }
    moka.run_pending_tasks();
    let moka_kib = rss_kib() - before;
    // Both stay alive: memory one freed would be reused by the other and hide its cost.
    let before = rss_kib();
    let quick = quick_cache::sync::Cache::<String, Arc<[u8]>>::new(N);
    for i in 0..N {
        quick.insert(key(i), Arc::from(vec![7u8; VALUE]));
    }
    let quick_kib = rss_kib() - before;
    drop((moka, quick));
    println!(
        "resident memory for {N} entries of {VALUE} B: moka {moka_kib} KiB, quick_cache {quick_kib} KiB (payload {} KiB)",
        N * VALUE / 1024
    );
}

fn hits(c: &mut Criterion) {
    memory();
    let moka = moka::sync::Cache::<String, Arc<[u8]>>::new(ENTRIES as u64);
    let quick = quick_cache::sync::Cache::<String, Arc<[u8]>>::new(ENTRIES);
    for i in 0..ENTRIES {
        moka.insert(key(i), value());
        quick.insert(key(i), value());
    }
    let probe = key(4242);
    let mut group = c.benchmark_group("local_hit_1k");
    group.bench_function("moka", |b| {
        b.iter(|| moka.get(std::hint::black_box(&probe)))
    });
    group.bench_function("quick_cache", |b| {
        b.iter(|| quick.get(std::hint::black_box(probe.as_str())))
    });
    group.finish();

    let mut group = c.benchmark_group("local_insert_1k");
    let v = value();
    let mut i = 0usize;
    group.bench_function("moka", |b| {
        b.iter(|| {
            i += 1;
            moka.insert(key(i % (ENTRIES * 2)), v.clone());
        })
    });
    group.bench_function("quick_cache", |b| {
        b.iter(|| {
            i += 1;
            quick.insert(key(i % (ENTRIES * 2)), v.clone());
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = hits
}
criterion_main!(benches);
