#!/usr/bin/env python3
"""DuckDB side of `journeydb bench` (written next to the data and run by it).

Usage: duckdb_bench.py SPEC.json. With a "journey" entry it also replays one journey run's
statements (translated by the bench) on a second database, from the same prepared state. The spec names the DuckDB database file, the Arrow IPC files
journeydb wrote (state, delta, profiles), the number of timed runs and the operations: each
{"name", "sql": [statements timed together], "answer": SQL or null}. Prints one JSON object:
versions, the ingest rate from Arrow, bytes on disk after CHECKPOINT, peak RSS, and per operation
the median seconds and the answer's first row as text.
"""
import datetime
import json
import os
import resource
import statistics
import sys
import time

import duckdb
import pyarrow as pa


def cell(v):
    if v is None:
        return None
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    return str(v)


def main():
    spec = json.load(open(sys.argv[1]))
    con = duckdb.connect(spec["db"])
    out = {"duckdb_version": duckdb.__version__, "ops": {}}
    for name, path in spec["arrow"].items():
        table = pa.ipc.open_file(pa.memory_map(path)).read_all()
        con.register("arrow_in", table)
        t = time.perf_counter()
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM arrow_in")
        d = time.perf_counter() - t
        con.unregister("arrow_in")
        if name == "state":
            out["ingest_rows_per_s"] = table.num_rows / d
            out["ingest_s"] = d
        del table
    con.execute("CHECKPOINT")
    size = os.path.getsize(spec["db"])
    if os.path.exists(spec["db"] + ".wal"):
        size += os.path.getsize(spec["db"] + ".wal")
    out["bytes_on_disk"] = size
    for op in spec["ops"]:
        times = []
        for i in range(spec["runs"] + 1):
            t = time.perf_counter()
            for sql in op["sql"]:
                con.execute(sql).fetchall()
            d = time.perf_counter() - t
            if i > 0:
                times.append(d)
        answer = None
        if op.get("answer"):
            row = con.execute(op["answer"]).fetchone()
            answer = [cell(v) for v in row] if row else []
        out["ops"][op["name"]] = {"median_s": statistics.median(times), "answer": answer}
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    con.close()
    if spec.get("io"):
        out["io"] = files(con_path=spec["db"] + ".io", spec=spec["io"])
    if spec.get("journey"):
        out["journey"] = journey(spec["journey"])
    json.dump(out, sys.stdout)


def files(con_path, spec):
    """(h) import of journeydb's Parquet export, (i) export to Parquet (zstd, as journeydb writes),
    (j) the event log pivot with GROUP BY .. FILTER."""
    con = duckdb.connect(con_path)
    con.execute("SET TimeZone = 'UTC'")
    res = {}
    c0, c1 = spec["columns"]

    def timed(sqls):
        times = []
        for i in range(spec["runs"] + 1):
            for s in sqls.get("before", []):
                con.execute(s)
            t = time.perf_counter()
            con.execute(sqls["sql"])
            d = time.perf_counter() - t
            if i > 0:
                times.append(d)
        return statistics.median(times)

    res["import_s"] = timed({
        "before": ["DROP TABLE IF EXISTS state_in"],
        "sql": f"CREATE TABLE state_in AS SELECT * FROM read_parquet('{spec['import']}')",
    })
    row = con.execute(f"SELECT count(*), min({c0})::TIMESTAMP, max({c1})::TIMESTAMP FROM state_in").fetchall()[0]
    res["import_answer"] = [cell(v) for v in row]
    res["export_s"] = timed({
        "sql": f"COPY state_in TO '{spec['export']}' (FORMAT parquet, COMPRESSION zstd)",
    })
    filters = ", ".join(
        f"min(time) FILTER (WHERE event = '{e}') AS {e}" for e in spec["event_names"])
    res["events_s"] = timed({
        "before": ["DROP TABLE IF EXISTS ev"],
        "sql": f"CREATE TABLE ev AS SELECT customer_id, {filters} FROM read_parquet('{spec['events']}') GROUP BY customer_id",
    })
    first, last = spec["event_names"][0], spec["event_names"][-1]
    row = con.execute(f"SELECT count(*), min({first})::TIMESTAMP, max({last})::TIMESTAMP FROM ev").fetchall()[0]
    res["events_answer"] = [cell(v) for v in row]
    con.close()
    return res


def journey(spec):
    """(g): the runner's recorded statements, translated, from the same prepared state."""
    con = duckdb.connect(spec["db"])
    for name, path in spec["arrow"].items():
        table = pa.ipc.open_file(pa.memory_map(path)).read_all()
        con.register("arrow_in", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM arrow_in")
        con.unregister("arrow_in")
        del table
    con.execute("CHECKPOINT")
    times = []
    for i in range(spec["runs"] + 1):
        for sql in spec["reset"]:
            con.execute(sql)
        t = time.perf_counter()
        for sql in spec["statements"]:
            try:
                con.execute(sql).fetchall()
            except duckdb.Error as e:
                raise SystemExit(f"journey statement failed: {e}\n  {sql}")
        d = time.perf_counter() - t
        if i > 0:
            times.append(d)
    row = con.execute(spec["answer"]).fetchone()
    return {
        "median_s": statistics.median(times),
        "answer": [cell(v) for v in row] if row else [],
        "statements": len(spec["statements"]),
    }


if __name__ == "__main__":
    main()
