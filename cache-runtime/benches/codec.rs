//! Codec and compression candidates on the values this cache stores.
//!
//! `cargo bench -p cache-runtime --bench codec` prints encoded sizes first, then criterion's
//! timings. The figures and the choice they led to are in BENCHMARKS.md.

use std::io::Read;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    sku: String,
    name: String,
    description: String,
    tags: Vec<String>,
    price_cents: u32,
    stock: u32,
    rating: f32,
    category_ids: Vec<u32>,
    active: bool,
}

/// A product whose postcard encoding is about 1 KiB.
fn product(id: u64) -> Product {
    Product {
        id,
        sku: format!("SKU-{id:08}"),
        name: "Adjustable LED desk lamp, warm white".to_owned(),
        description: "Weighted base, three brightness levels, USB-C powered. ".repeat(15),
        tags: ["lighting", "office", "led", "desk", "usb-c"]
            .map(str::to_owned)
            .to_vec(),
        price_cents: 4_999,
        stock: 120,
        rating: 4.6,
        category_ids: (1..=24).collect(),
        active: true,
    }
}

fn codecs(c: &mut Criterion) {
    let value = product(42);
    let postcard_bytes = postcard::to_stdvec(&value).expect("postcard");
    let rmp_bytes = rmp_serde::to_vec(&value).expect("rmp");
    let json_bytes = serde_json::to_vec(&value).expect("json");
    println!(
        "encoded sizes: postcard {} B, rmp-serde {} B, json {} B",
        postcard_bytes.len(),
        rmp_bytes.len(),
        json_bytes.len()
    );

    let mut group = c.benchmark_group("encode_1k_struct");
    group.bench_function("postcard", |b| {
        b.iter(|| postcard::to_stdvec(std::hint::black_box(&value)))
    });
    group.bench_function("rmp-serde", |b| {
        b.iter(|| rmp_serde::to_vec(std::hint::black_box(&value)))
    });
    group.bench_function("json", |b| {
        b.iter(|| serde_json::to_vec(std::hint::black_box(&value)))
    });
    group.finish();

    let mut group = c.benchmark_group("decode_1k_struct");
    group.bench_function("postcard", |b| {
        b.iter(|| postcard::from_bytes::<Product>(std::hint::black_box(&postcard_bytes)))
    });
    group.bench_function("rmp-serde", |b| {
        b.iter(|| rmp_serde::from_slice::<Product>(std::hint::black_box(&rmp_bytes)))
    });
    group.bench_function("json", |b| {
        b.iter(|| serde_json::from_slice::<Product>(std::hint::black_box(&json_bytes)))
    });
    group.finish();
}

fn zstd_decompress(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ruzstd::decoding::StreamingDecoder::new(bytes)
        .expect("zstd frame")
        .read_to_end(&mut out)
        .expect("zstd decode");
    out
}

fn compression(c: &mut Criterion) {
    // A product list page: 16 products, the kind of value that crosses the threshold.
    let page: Vec<Product> = (0..16).map(product).collect();
    let plain = postcard::to_stdvec(&page).expect("postcard");
    let lz4 = lz4_flex::compress_prepend_size(&plain);
    let zstd = ruzstd::encoding::compress_to_vec(
        plain.as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    assert_eq!(zstd_decompress(&zstd), plain);
    println!(
        "compression of a {} B list page: lz4_flex {} B, ruzstd (fastest) {} B",
        plain.len(),
        lz4.len(),
        zstd.len()
    );

    let mut group = c.benchmark_group("compress_list_page");
    group.bench_function(BenchmarkId::new("lz4_flex", plain.len()), |b| {
        b.iter(|| lz4_flex::compress_prepend_size(std::hint::black_box(&plain)))
    });
    group.bench_function(BenchmarkId::new("ruzstd", plain.len()), |b| {
        b.iter(|| {
            ruzstd::encoding::compress_to_vec(
                std::hint::black_box(plain.as_slice()),
                ruzstd::encoding::CompressionLevel::Fastest,
            )
        })
    });
    group.finish();

    let mut group = c.benchmark_group("decompress_list_page");
    group.bench_function(BenchmarkId::new("lz4_flex", plain.len()), |b| {
        b.iter(|| lz4_flex::decompress_size_prepended(std::hint::black_box(&lz4)))
    });
    group.bench_function(BenchmarkId::new("ruzstd", plain.len()), |b| {
        b.iter(|| zstd_decompress(std::hint::black_box(&zstd)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = codecs, compression
}
criterion_main!(benches);
