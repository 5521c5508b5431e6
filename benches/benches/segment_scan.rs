//! Segment kernels: value block encode/decode of journey timestamps, and a column read through a
//! snapshot (bitmap + values decoded from an mmapped segment).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use journeydb_benches::Journey;
use journeydb_storage::encoding::{decode_values, encode_values};
use journeydb_storage::{ColumnId, ColumnType, Database, KeyType, Options, Values};

fn bench(c: &mut Criterion) {
    let j = Journey::new(1 << 18, 9);
    let mut g = c.benchmark_group("segment_scan");
    for col in [0usize, 29] {
        let v: Vec<i64> = (0..j.customers).filter_map(|i| j.value(i, col)).collect();
        g.throughput(Throughput::Elements(v.len() as u64));
        let values = Values::Int(v);
        let block = encode_values(&values, true);
        g.bench_with_input(
            BenchmarkId::new("encode", j.column_name(col)),
            &values,
            |b, v| b.iter(|| encode_values(v, true)),
        );
        g.bench_with_input(
            BenchmarkId::new("decode", j.column_name(col)),
            &block,
            |b, blk| {
                b.iter(|| decode_values(Path::new("bench"), blk, 0, ColumnType::Timestamp).unwrap())
            },
        );
    }
    // An event log's times, as a pivot's column holds them: mostly distinct, so the DICT choice
    // counts until no dictionary can win.
    let times: Vec<i64> = (0..j.customers as u64)
        .map(|i| {
            let h = journeydb_benches::mix(0xE7 ^ i);
            1_767_225_600_000_000 + ((h >> 8) % (90 * 86_400_000_000)) as i64
        })
        .collect();
    g.throughput(Throughput::Elements(times.len() as u64));
    g.bench_with_input(
        BenchmarkId::new("encode", "event_times"),
        &Values::Int(times),
        |b, v| b.iter(|| encode_values(v, true)),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(
        dir.path(),
        KeyType::Varchar,
        Options {
            background: false,
            ..Options::default()
        },
    )
    .unwrap();
    db.create_table("state", j.schema()).unwrap();
    db.append("state", &j.batch(0..j.customers)).unwrap();
    db.flush().unwrap();
    let t = db.snapshot().table("state").unwrap();
    let p = *t.partitions().first().expect("the table has a partition");
    g.throughput(Throughput::Elements(j.customers as u64));
    g.bench_function("read_column_stage1_one_partition", |b| {
        b.iter(|| t.column(p, ColumnId(0)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
