//! MIN-merge of column data: a state column folded with a delta (the fold of a journey run), and a
//! chunk of appended rows folded by ordinal.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use journeydb_benches::mix;
use journeydb_storage::values::{fold_rows, merge_columns};
use journeydb_storage::{ColumnData, ColumnType, MergeRule, Values};

fn column(n: u32, density: f64, seed: u64) -> ColumnData {
    let cut = (density * u64::MAX as f64) as u64;
    let ords: Vec<u32> = (0..n).filter(|&i| mix(seed ^ i as u64) < cut).collect();
    let values = ords
        .iter()
        .map(|&o| 1_767_225_600_000_000 + (mix(o as u64) % 180) as i64 * 14_400_000_000)
        .collect();
    ColumnData {
        presence: ords.into_iter().collect(),
        values: Values::Int(values),
    }
}

fn bench(c: &mut Criterion) {
    // One partition of the default size.
    let n = 1 << 18;
    let mut g = c.benchmark_group("min_merge");
    g.throughput(Throughput::Elements(n as u64));
    for density in [0.6, 0.05] {
        let state = column(n, density, 1);
        let delta = column(n, 0.1, 2);
        g.bench_with_input(
            BenchmarkId::new("state_plus_delta", density),
            &(&state, &delta),
            |b, (s, d)| b.iter(|| merge_columns(MergeRule::Min, ColumnType::Timestamp, &[s, d])),
        );
    }
    let rows: Vec<u32> = (0..100_000u64)
        .map(|i| (mix(i) % n as u64) as u32)
        .collect();
    let valid = vec![true; rows.len()];
    let values = Values::Int(rows.iter().map(|&o| o as i64).collect());
    g.bench_function("fold_100k_appended_rows", |b| {
        b.iter(|| fold_rows(MergeRule::Min, &rows, &valid, &values))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
