#!/usr/bin/env python3
"""Spark reads journeydb's partitioned exports (issue 12); run by scripts/interop-spark.sh.

usage: interop_spark.py JOURNEYDB DB_DIR EXPORT_DIR TABLE [TABLE ..]

For each table, `EXPORT_DIR/TABLE` holds `bucket=NN/part-00000.parquet` written by
`journeydb export --partition-by-hash`. Spark (local mode) reads the buckets; its row count and,
per column, non-NULL count, min and max must equal journeydb's own answers, and every key must sit in
the bucket the documented hash gives (FNV-1a 64 of the UTF-8 key, or the BIGINT's bits, through
splitmix64, modulo the bucket count). Exits non-zero on the first difference.
"""
import csv
import io
import os
import subprocess
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

J, DB, OUT, TABLES = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
M64 = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def bucket_of(key, n):
    if isinstance(key, int):
        return splitmix64(key & M64) % n
    h = 0xCBF29CE484222325
    for b in key.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & M64
    return splitmix64(h) % n


def jdb_rows(sql):
    r = subprocess.run([J, "sql", "--db", DB, "--format", "csv", "-c", sql], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"journeydb: {sql}\n{r.stderr}")
    return list(csv.reader(io.StringIO(r.stdout)))[1:]


def text(v):
    if v is None:
        return ""
    if hasattr(v, "strftime"):
        s = v.strftime("%Y-%m-%d %H:%M:%S")
        return s + (f".{v.microsecond:06d}" if v.microsecond else "")
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


spark = (SparkSession.builder.master("local[2]").appName("journeydb-interop")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
failures = 0
for t in TABLES:
    cols = jdb_rows(
        f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{t}' "
        "ORDER BY ordinal_position")
    key = cols[0][0]
    values = [(c, ty) for c, ty in cols[1:]]
    ordered = [c for c, ty in values if ty != "character varying"]
    aggs = ["count(*)"]
    for c, _ in values:
        aggs.append(f"count({c})")
    for c in ordered:
        aggs += [f"min({c})", f"max({c})"]
    ours = jdb_rows(f"SELECT {', '.join(aggs)} FROM {t}")[0]
    df = spark.read.parquet(os.path.join(OUT, t))
    buckets = sorted(r[0] for r in df.select("bucket").distinct().collect())
    exprs = [F.count(F.lit(1))] + [F.count(F.col(c)) for c, _ in values]
    for c in ordered:
        exprs += [F.min(F.col(c)), F.max(F.col(c))]
    theirs = [text(v) for v in df.agg(*exprs).collect()[0]]
    # Doubles compare as numbers (the two print them differently).
    diffs = []
    for name, a, b in zip(aggs, ours, theirs):
        if a == b:
            continue
        try:
            if float(a) == float(b):
                continue
        except ValueError:
            pass
        diffs.append(f"{name}: journeydb {a!r}, Spark {b!r}")
    n = len(buckets)
    keys = df.select(key, "bucket").collect()
    misplaced = [(k, b) for k, b in keys if bucket_of(k, n) != int(b)]
    print(f"{t}: Spark read {theirs[0]} rows from {n} buckets; "
          f"{len(aggs)} aggregates {'equal' if not diffs else 'DIFFER'}; "
          f"{len(keys) - len(misplaced)}/{len(keys)} keys in their documented bucket")
    for d in diffs[:10]:
        print("   ", d)
    for k, b in misplaced[:5]:
        print(f"    key {k!r} found in bucket {b}, hash says {bucket_of(k, n)}")
    if diffs or misplaced or theirs[0] != ours[0]:
        failures += 1
spark.stop()
if failures:
    sys.exit(f"{failures} tables differ")
print("Spark agrees with journeydb on every table")
