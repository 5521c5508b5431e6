//! Set operations on presence bitmaps at journey densities: the INTERSECT / UNION / EXCEPT kernels.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use journeydb_benches::mix;
use roaring::RoaringBitmap;

fn random_set(n: u32, density: f64, seed: u64) -> RoaringBitmap {
    let cut = (density * u64::MAX as f64) as u64;
    (0..n).filter(|&i| mix(seed ^ i as u64) < cut).collect()
}

fn bench(c: &mut Criterion) {
    let n = 10_000_000u32;
    let mut g = c.benchmark_group("bitmap_ops");
    g.throughput(Throughput::Elements(n as u64));
    for (da, db) in [(0.6, 0.26), (0.05, 0.005)] {
        let a = random_set(n, da, 1);
        let b = random_set(n, db, 2);
        let id = format!("{da}x{db}");
        g.bench_with_input(
            BenchmarkId::new("intersect_len", &id),
            &(&a, &b),
            |bch, (a, b)| bch.iter(|| a.intersection_len(b)),
        );
        g.bench_with_input(
            BenchmarkId::new("intersect", &id),
            &(&a, &b),
            |bch, (a, b)| bch.iter(|| *a & *b),
        );
        g.bench_with_input(BenchmarkId::new("union", &id), &(&a, &b), |bch, (a, b)| {
            bch.iter(|| *a | *b)
        });
        g.bench_with_input(BenchmarkId::new("except", &id), &(&a, &b), |bch, (a, b)| {
            bch.iter(|| *a - *b)
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
