//! Key dictionary: lookups of existing keys one at a time and in prefetched blocks
//! (`KeyDict::lookup_batch`, what appends and bulk loads use), and ordinal to key.
//!
//! Keys: `JOURNEYDB_BENCH_CUSTOMERS` (default 1,000,000). The probes are 100,000 keys in random
//! order, held in one buffer as an Arrow string column holds them.
#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use journeydb_benches::Journey;
use journeydb_storage::dir::DiskDir;
use journeydb_storage::keydict::KeyDict;
use journeydb_storage::{Key, KeyType};

fn bench(c: &mut Criterion) {
    let customers: usize = std::env::var("JOURNEYDB_BENCH_CUSTOMERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let j = Journey::new(customers, 3);
    let keys: Vec<String> = (0..j.customers).map(|i| j.key(i)).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut d = KeyDict::create(&DiskDir, &dir.path().join("keys.dict"), KeyType::Varchar).unwrap();
    d.get_or_insert(keys.iter().map(|k| Key::Str(k))).unwrap();
    // 100k probes at random, contiguous in memory.
    let mut x = 7u64;
    let mut flat = String::new();
    let mut spans = Vec::new();
    for _ in 0..100_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = &keys[(x >> 33) as usize % keys.len()];
        spans.push((flat.len(), flat.len() + k.len()));
        flat.push_str(k);
    }
    let probe: Vec<&str> = spans.iter().map(|&(a, b)| &flat[a..b]).collect();
    let mut g = c.benchmark_group("keydict");
    g.throughput(Throughput::Elements(100_000));
    g.bench_function(
        format!("lookup_one_by_one_100k_random_of_{customers}"),
        |b| b.iter(|| probe.iter().filter_map(|k| d.lookup(Key::Str(k))).count()),
    );
    g.bench_function(format!("lookup_batch_100k_random_of_{customers}"), |b| {
        b.iter(|| {
            d.lookup_batch(probe.len(), |i| Key::Str(probe[i]))
                .into_iter()
                .flatten()
                .count()
        })
    });
    g.bench_function("ordinal_to_key_100k", |b| {
        b.iter(|| (0..100_000u32).filter_map(|o| d.key(o)).count())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
