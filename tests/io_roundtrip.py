#!/usr/bin/env python3
"""Round trip of files through journeydb against an engine we did not write (issue 12).

DuckDB writes random data (NULLs, quotes, commas and newlines inside fields, unicode, timestamps
before 1970 and at microsecond edges, every type) as Parquet, CSV and JSON; `journeydb` imports each
file (SQL `COPY t FROM`), exports the table in each format (SQL `COPY t TO`, and `journeydb export`
for hash buckets), and DuckDB reads every export back and compares it with the original, both ways
(EXCEPT ALL). An event log written by DuckDB is pivoted by `journeydb import events` and compared with
DuckDB's own `GROUP BY customer_id` with `min(..) FILTER`.

usage: io_roundtrip.py JOURNEYDB_BINARY WORK_DIR [SEED]
Prints one line per comparison and exits non-zero on the first difference.
"""
import os
import random
import subprocess
import sys

import duckdb

J, W = sys.argv[1], sys.argv[2]
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else 12
rng = random.Random(SEED)
os.makedirs(W, exist_ok=True)
DB = os.path.join(W, "db")


def jdb(*args, check=True):
    r = subprocess.run([J, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"journeydb {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def sql(s):
    return jdb("sql", "--db", DB, "-c", s)


def p(name):
    return os.path.join(W, name)


con = duckdb.connect()
con.sql("SET TimeZone = 'UTC'")

STRINGS = [
    "plain", "", "with,comma", 'with "quotes"', "new\nline", "cr\r\nlf", "  spaces  ", "NULL",
    "back\\slash", "ünïcødé ✓", "日本語", "tab\there", "'single'", ",", '"', "\\N",
]
US_EDGES = [-1, 0, 1, 999_999, 1_000_000, -62_135_596_800_000_000 + 1, 253_402_300_799_999_999,
            -2_208_988_800_000_001]
N = 4000
rows = []
for i in range(N):
    key = rng.choice(["c", "ключ", "k,", 'k"', "k\n"]) + str(i)
    ts = None if rng.random() < 0.15 else (
        rng.choice(US_EDGES) if rng.random() < 0.1 else rng.randint(-2_500_000_000_000_000, 4_000_000_000_000_000))
    n = None if rng.random() < 0.15 else rng.choice(
        [-(2**63), 2**63 - 1, 0, rng.randint(-(10**12), 10**12)])
    d = None if rng.random() < 0.15 else rng.choice(
        [0.1, -1e300, 1e-300, 3.0, float("inf"), float("-inf"), float("nan"), rng.uniform(-1e6, 1e6), -0.5, 5e-324, 1.7976931348623157e308])
    b = None if rng.random() < 0.15 else rng.random() < 0.5
    s = None if rng.random() < 0.15 else rng.choice(STRINGS) + (str(i) if rng.random() < 0.5 else "")
    rows.append((key, ts, n, d, b, s))
con.sql("CREATE TABLE raw (k VARCHAR, tsus BIGINT, n BIGINT, d DOUBLE, b BOOLEAN, s VARCHAR)")
con.executemany("INSERT INTO raw VALUES (?, ?, ?, ?, ?, ?)", rows)
con.sql("CREATE TABLE orig AS SELECT k AS customer_id, make_timestamp(tsus) AS ts, n, d, b, s FROM raw")
# JSON has no infinities: the JSON cases compare against the original with them as NULL.
con.sql("CREATE TABLE orig_finite AS SELECT customer_id, ts, n, CASE WHEN isfinite(d) THEN d END AS d, b, s FROM orig")
con.sql(f"COPY orig TO '{p('in.parquet')}' (FORMAT parquet)")
con.sql(f"COPY orig TO '{p('in.csv')}' (FORMAT csv, HEADER)")
con.sql(f"COPY orig_finite TO '{p('in.json')}' (FORMAT json)")

TYPES = "{'customer_id': 'VARCHAR', 'ts': 'TIMESTAMP', 'n': 'BIGINT', 'd': 'DOUBLE', 'b': 'BOOLEAN', 's': 'VARCHAR'}"
READ = {
    "parquet": lambda f: f"read_parquet('{f}')",
    "csv": lambda f: f"read_csv('{f}', header = true, allow_quoted_nulls = false, columns = {TYPES})",
    "json": lambda f: f"read_json('{f}', columns = {TYPES})",
}
COLS = "customer_id, ts::TIMESTAMP AS ts, n, d, b, s"
jdb("sql", "--db", DB, "-c", "SELECT 1")
failures = 0


def one(q):
    return con.execute(q).fetchall()[0][0]


def compare(label, expected, got_rel):
    global failures
    got = f"(SELECT {COLS} FROM {got_rel})"
    exp = f"(SELECT {COLS} FROM {expected})"
    a = one(f"SELECT count(*) FROM ({exp} EXCEPT ALL {got})")
    b = one(f"SELECT count(*) FROM ({got} EXCEPT ALL {exp})")
    n = one(f"SELECT count(*) FROM {got}")
    ok = a == 0 and b == 0 and n == N
    print(f"{'ok  ' if ok else 'DIFF'} {label}: {n} rows, {a} missing, {b} extra")
    if not ok:
        failures += 1
        print(con.execute(f"SELECT * FROM ({exp} EXCEPT ALL {got}) ORDER BY 1 LIMIT 3").fetchall())
        print(con.execute(f"SELECT * FROM ({got} EXCEPT ALL {exp}) ORDER BY 1 LIMIT 3").fetchall())


for fin in ["parquet", "csv", "json"]:
    t = f"t_{fin}"
    sql(f"CREATE TABLE {t} (customer_id VARCHAR PRIMARY KEY, ts TIMESTAMP MERGE LAST, n BIGINT MERGE LAST, "
        f"d DOUBLE MERGE LAST, b BOOLEAN MERGE LAST, s VARCHAR MERGE LAST)")
    sql(f"COPY {t} FROM '{p('in.' + fin)}'")
    for fout in ["parquet", "csv", "json"]:
        out = p(f"out_{fin}.{fout}")
        sql(f"COPY {t} TO '{out}' (FORMAT {fout})")
        expected = "orig_finite" if "json" in (fin, fout) else "orig"
        compare(f"{fin} -> journeydb -> {fout}", expected, READ[fout](out))
    # The query form, and hash buckets written by the command line.
    out = p(f"q_{fin}.parquet")
    sql(f"COPY (SELECT * FROM {t}) TO '{out}'")
    compare(f"{fin} -> journeydb -> COPY (query) parquet", "orig_finite" if fin == "json" else "orig",
            READ["parquet"](out))
    buckets = p(f"buckets_{fin}")
    jdb("export", "--db", DB, "--table", t, "--out", buckets, "--partition-by-hash", "8")
    compare(f"{fin} -> journeydb -> 8 hash buckets", "orig_finite" if fin == "json" else "orig",
            f"read_parquet('{buckets}/*/*.parquet', hive_partitioning = true)")
    per = one(f"SELECT count(DISTINCT bucket) FROM read_parquet('{buckets}/*/*.parquet', hive_partitioning = true)")
    if per != 8:
        print(f"DIFF buckets: {per} of 8 used")
        failures += 1

# The event log pivot against DuckDB's GROUP BY .. FILTER.
EVENTS = ["view", "click", "Add to Cart", "purchase"]
con.sql(f"""CREATE TABLE ev AS SELECT 'c' || (i * 7919 % 3000) AS customer_id,
    ({EVENTS})[1 + (i * 31 % 4)] AS event,
    make_timestamp(1700000000000000 + (i * 104729 % 86400000) * 1000000) AS time
    FROM range(60000) t(i)""")
con.sql(f"COPY (SELECT * FROM ev WHERE customer_id < 'c2') TO '{p('ev1.parquet')}' (FORMAT parquet)")
con.sql(f"COPY (SELECT * FROM ev WHERE customer_id >= 'c2') TO '{p('ev2.csv')}' (FORMAT csv, HEADER)")
jdb("import", "events", p("ev1.parquet"), "--table", "behaviours", "--count", "--db", DB, "--progress", "none")
jdb("import", "events", p("ev2.csv"), "--table", "behaviours", "--count", "--db", DB, "--progress", "none")
sql(f"COPY behaviours TO '{p('behaviours.parquet')}'")
cols = ", ".join(
    f"min(time) FILTER (WHERE event = '{e}') AS {e.lower().replace(' ', '_')}, "
    f"nullif(count(*) FILTER (WHERE event = '{e}'), 0) AS {e.lower().replace(' ', '_')}_count"
    for e in EVENTS)
names = ", ".join(f"{c}::TIMESTAMP AS {c}, {c}_count" for c in (e.lower().replace(' ', '_') for e in EVENTS))
exp = f"(SELECT customer_id, {cols} FROM ev GROUP BY customer_id)"
got = f"(SELECT customer_id, {names} FROM read_parquet('{p('behaviours.parquet')}'))"
a = one(f"SELECT count(*) FROM ({exp} EXCEPT ALL {got})")
b = one(f"SELECT count(*) FROM ({got} EXCEPT ALL {exp})")
n = one(f"SELECT count(*) FROM {got}")
ok = a == 0 and b == 0 and n == 3000
print(f"{'ok  ' if ok else 'DIFF'} event pivot (parquet + csv) vs DuckDB GROUP BY .. FILTER: {n} customers, {a} missing, {b} extra")
failures += 0 if ok else 1

# The same pivot in SQL: table functions, UNION ALL, GROUP BY the key, aggregates with FILTER.
sql_cols = ", ".join(
    f"min(time) FILTER (WHERE event = '{e}') AS {e.lower().replace(' ', '_')}, "
    f"count(*) FILTER (WHERE event = '{e}') AS {e.lower().replace(' ', '_')}_count"
    for e in EVENTS)
sql(f"CREATE TABLE beh_sql AS SELECT customer_id, {sql_cols} FROM (SELECT customer_id, event, time FROM "
    f"read_parquet('{p('ev1.parquet')}') UNION ALL SELECT customer_id, event, time FROM "
    f"read_csv('{p('ev2.csv')}', header = true)) GROUP BY customer_id")
sql(f"COPY beh_sql TO '{p('beh_sql.parquet')}'")
duck_cols = ", ".join(
    f"min(time) FILTER (WHERE event = '{e}') AS {e.lower().replace(' ', '_')}, "
    f"count(*) FILTER (WHERE event = '{e}') AS {e.lower().replace(' ', '_')}_count"
    for e in EVENTS)
exp = f"(SELECT customer_id, {duck_cols} FROM ev GROUP BY customer_id)"
got = f"(SELECT customer_id, {names} FROM read_parquet('{p('beh_sql.parquet')}'))"
a = one(f"SELECT count(*) FROM ({exp} EXCEPT ALL {got})")
b = one(f"SELECT count(*) FROM ({got} EXCEPT ALL {exp})")
n = one(f"SELECT count(*) FROM {got}")
ok = a == 0 and b == 0 and n == 3000
print(f"{'ok  ' if ok else 'DIFF'} SQL pivot over read_parquet + read_csv (FILTER, GROUP BY) vs DuckDB: {n} customers, {a} missing, {b} extra")
failures += 0 if ok else 1
if failures:
    sys.exit(f"{failures} comparisons differ")
print("all round trips equal")
