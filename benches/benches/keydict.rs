//! Key dictionary: lookups of existing keys and inserts of new ones.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use journeydb_benches::Journey;
use journeydb_storage::dir::DiskDir;
use journeydb_storage::keydict::KeyDict;
use journeydb_storage::{Key, KeyType};

fn bench(c: &mut Criterion) {
    let j = Journey::new(1_000_000, 3);
    let keys: Vec<String> = (0..j.customers).map(|i| j.key(i)).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut d = KeyDict::create(&DiskDir, &dir.path().join("keys.dict"), KeyType::Varchar).unwrap();
    d.get_or_insert(keys.iter().map(|k| Key::Str(k))).unwrap();
    let mut g = c.benchmark_group("keydict");
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("lookup_100k_of_1m", |b| {
        b.iter(|| {
            keys.iter()
                .take(100_000)
                .filter_map(|k| d.lookup(Key::Str(k)))
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
