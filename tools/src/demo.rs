//! `journeydb demo`: the storage engine on a journey-shaped dataset, end to end.
//!
//! Until the query engine and journey runner land, the demo drives the storage API directly: set
//! operations are roaring bitmap AND / OR / AND-NOT over presence bitmaps, and the MIN fold is the
//! engine's merge rule.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use journeydb_benches::Journey;
use journeydb_storage::{Database, KeyType, Options, TableSnapshot, Values};
use roaring::RoaringBitmap;

/// Rows per append.
const BATCH_ROWS: usize = 100_000;

struct Args {
    customers: usize,
    dir: Option<PathBuf>,
    keep: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        customers: 1_000_000,
        dir: None,
        keep: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--customers" => {
                let v = it.next().ok_or("--customers needs a number")?;
                out.customers = v
                    .replace('_', "")
                    .parse()
                    .map_err(|_| format!("--customers: {v:?} is not a number"))?;
                if out.customers == 0 || out.customers > 100_000_000 {
                    return Err("--customers must be between 1 and 100000000".into());
                }
            }
            "--dir" => out.dir = Some(PathBuf::from(it.next().ok_or("--dir needs a path")?)),
            "--keep" => out.keep = true,
            other => return Err(format!("demo: unknown option {other:?}")),
        }
    }
    Ok(out)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Presence bitmap of column `name` over every partition.
fn presence(t: &TableSnapshot, name: &str) -> Result<RoaringBitmap, String> {
    let mut all = RoaringBitmap::new();
    for p in t.partitions() {
        all |= t.column_by_name(p, name).map_err(err)?.presence;
    }
    Ok(all)
}

/// Smallest value of column `name` (a MIN over the whole column).
fn column_min(t: &TableSnapshot, name: &str) -> Result<Option<i64>, String> {
    let mut m: Option<i64> = None;
    for p in t.partitions() {
        if let Values::Int(v) = t.column_by_name(p, name).map_err(err)?.values {
            if let Some(x) = v.iter().min() {
                m = Some(m.map_or(*x, |y| y.min(*x)));
            }
        }
    }
    Ok(m)
}

/// Formats µs since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn fmt_ts(us: Option<i64>) -> String {
    let Some(us) = us else { return "NULL".into() };
    let secs = us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Runs the demo with command-line `args`.
pub fn run(args: &[String]) -> Result<(), String> {
    let args = parse(args)?;
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("journeydb-demo-{}", std::process::id()))
    });
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let started = Instant::now();
    let j = Journey::new(args.customers, 2026);
    let db = Database::create(&dir, KeyType::Varchar, Options::default()).map_err(err)?;
    db.create_table("journey_state", j.schema()).map_err(err)?;
    println!(
        "journeydb demo: {} customers, {} funnel columns, database at {}",
        args.customers,
        j.columns,
        dir.display()
    );

    // 1. Load the state through durable appends.
    let t0 = Instant::now();
    let mut done = 0;
    while done < args.customers {
        let end = (done + BATCH_ROWS).min(args.customers);
        db.append("journey_state", &j.batch(done..end))
            .map_err(err)?;
        done = end;
        if done % (BATCH_ROWS * 5) == 0 || done == args.customers {
            eprint!(
                "\r  loading {done}/{} customers ({:.0}%)",
                args.customers,
                done as f64 * 100.0 / args.customers as f64
            );
        }
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    let flushed = db.flush().map_err(err)?;
    let compacted = db.compact(2).map_err(err)?;
    let load = t0.elapsed();
    println!(
        "  loaded in {load:.2?} ({:.0} rows/s); flush wrote {} segments, compaction folded {} into {}",
        args.customers as f64 / load.as_secs_f64(),
        flushed.segments,
        compacted.segments_in,
        compacted.segments_out
    );

    // 2. The funnel: every count is a bitmap cardinality.
    let snap = db.snapshot();
    let t = snap.table("journey_state").map_err(err)?;
    let t1 = Instant::now();
    println!("\n  funnel (customers who reached each state):");
    let mut bitmaps = Vec::new();
    for c in 0..j.columns {
        let b = presence(&t, &j.column_name(c))?;
        if c % 5 == 0 || c == j.columns - 1 {
            println!(
                "    {:<16} {:>10}  {:>6.2}%",
                j.column_name(c),
                b.len(),
                b.len() as f64 * 100.0 / args.customers as f64
            );
        }
        bitmaps.push(b);
    }
    let funnel_time = t1.elapsed();

    // 3. Set operations of a journey run, on bitmaps.
    let t2 = Instant::now();
    let pick = |i: usize| {
        bitmaps
            .get(i)
            .ok_or_else(|| format!("the journey has no column {i}"))
    };
    let (s1, s2, exit) = (pick(0)?, pick(5)?, pick(3)?);
    let in_stage1_only = s1 - s2;
    let advanced = s1 & s2;
    let either = s1 | exit;
    let waiting = &in_stage1_only - exit;
    let setops = t2.elapsed();
    println!("\n  set operations (bitmap AND / OR / AND-NOT):");
    println!(
        "    stage1 INTERSECT stage2          {:>10}",
        advanced.len()
    );
    println!(
        "    stage1 EXCEPT stage2             {:>10}",
        in_stage1_only.len()
    );
    println!("    stage1 UNION stage1_step_3       {:>10}", either.len());
    println!(
        "    (stage1 EXCEPT stage2) EXCEPT stage1_step_3 {:>10}",
        waiting.len()
    );
    println!(
        "    funnel of {} columns in {funnel_time:.2?}, four set operations in {setops:.2?}",
        j.columns
    );

    // 4. A day's new facts folded in with MIN: 10% of customers get an earlier stage1 time.
    let t3 = Instant::now();
    let delta = args.customers.div_ceil(10);
    let earlier = journeydb_benches::EPOCH_US - 86_400_000_000;
    let keys: Vec<String> = (0..delta).map(|i| j.key(i * 10 % args.customers)).collect();
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("customer_id", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new(
            "stage1",
            arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
            true,
        ),
    ]));
    let batch = arrow_array::RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(arrow_array::StringArray::from_iter_values(keys)),
            std::sync::Arc::new(arrow_array::TimestampMicrosecondArray::from(vec![
                earlier;
                delta
            ])),
        ],
    )
    .map_err(err)?;
    db.append("journey_state", &batch).map_err(err)?;
    let after = db.snapshot().table("journey_state").map_err(err)?;
    let s1_after = presence(&after, "stage1")?;
    let min_after = column_min(&after, "stage1")?;
    println!(
        "\n  MIN fold of {delta} new rows: stage1 now holds {} customers, earliest {} (was {}), in {:.2?}",
        s1_after.len(),
        fmt_ts(min_after),
        fmt_ts(column_min(&t, "stage1")?),
        t3.elapsed()
    );
    if min_after != Some(earlier) {
        return Err("the MIN fold did not take the earlier timestamp".into());
    }

    // 5. Reopen: the state comes back from segments plus the write-ahead log.
    let expected = s1_after.len();
    drop((t, after, snap));
    drop(db);
    let t4 = Instant::now();
    let db = Database::open(&dir, Options::default()).map_err(err)?;
    let reopened = presence(
        &db.snapshot().table("journey_state").map_err(err)?,
        "stage1",
    )?
    .len();
    println!(
        "  reopened in {:.2?}: stage1 holds {reopened} customers",
        t4.elapsed()
    );
    if reopened != expected {
        return Err(format!(
            "after reopen stage1 holds {reopened}, expected {expected}"
        ));
    }
    let seg_bytes: u64 = std::fs::read_dir(dir.join("seg"))
        .map_err(err)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("  segments on disk: {:.1} MB", seg_bytes as f64 / 1e6);
    drop(db);
    if !args.keep && args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("\ndone in {:.2?}", started.elapsed());
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_utc_dates() {
        assert_eq!(fmt_ts(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(
            fmt_ts(Some(journeydb_benches::EPOCH_US)),
            "2026-01-01 00:00:00"
        );
        assert_eq!(
            fmt_ts(Some(951_782_400_000_000 + 3_661_000_000)),
            "2000-02-29 01:01:01"
        );
        assert_eq!(fmt_ts(Some(-1)), "1969-12-31 23:59:59");
        assert_eq!(fmt_ts(None), "NULL");
    }

    #[test]
    fn bad_options_are_refused() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).err();
        assert!(a(&["--customers", "x"]).is_some());
        assert!(a(&["--customers", "0"]).is_some());
        assert!(a(&["--customers"]).is_some());
        assert!(a(&["--bogus"]).is_some());
        assert!(a(&["--customers", "1_000"]).is_none());
    }
}
