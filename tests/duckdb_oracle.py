#!/usr/bin/env python3
"""DuckDB oracle for journeydb's differential test.

Usage: duckdb_oracle.py DIR
DIR holds spec.json: {"tables": [{"name", "csv", "columns": [[name, type, rule]...], "key"}], "queries": [sql...]}.
Each table is loaded raw from its CSV (every appended row) and exposed as the equivalence view of
DESIGN.md section 3: SELECT key, RULE(c) AS c, .. FROM raw GROUP BY key. Writes results.json: one entry per
query, {"rows": [[cell text or null, ...], ...]} or {"error": message}.
"""
import datetime
import json
import sys

import duckdb


def interval_text(us):
    """An interval of whole microseconds as DuckDB prints the difference of two timestamps."""
    day = 86_400_000_000
    days = abs(us) // day * (1 if us >= 0 else -1)
    rest = us - days * day
    out = []
    if days:
        out.append(f"{days} day" + ("" if abs(days) == 1 else "s"))
    if rest or not days:
        r = abs(rest)
        t = f"{'-' if rest < 0 else ''}{r // 3_600_000_000:02}:{r // 60_000_000 % 60:02}:{r // 1_000_000 % 60:02}"
        if r % 1_000_000:
            t += "." + f"{r % 1_000_000:06}".rstrip("0")
        out.append(t)
    return " ".join(out)


def cell(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, datetime.timedelta):
        return interval_text(v // datetime.timedelta(microseconds=1))
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return str(v)


def main():
    d = sys.argv[1]
    spec = json.load(open(f"{d}/spec.json"))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for t in spec["tables"]:
        cols = {c[0]: c[1] for c in [[t["key"], "VARCHAR", None]] + t["columns"]}
        con.execute(
            f"CREATE TABLE raw_{t['name']} AS SELECT * FROM read_csv(?, header=true, columns={json.dumps(cols)}, nullstr='')",
            [t["csv"]],
        )
        folds = ", ".join(f"{c[2]}({c[0]}) AS {c[0]}" for c in t["columns"])
        con.execute(f"CREATE VIEW {t['name']} AS SELECT {t['key']}, {folds} FROM raw_{t['name']} GROUP BY {t['key']}")
    out = []
    for q in spec["queries"]:
        try:
            rows = con.execute(q).fetchall()
            out.append({"rows": [[cell(v) for v in r] for r in rows]})
        except Exception as e:  # noqa: BLE001 - every failure is reported to the Rust side
            out.append({"error": str(e)})
    json.dump(out, open(f"{d}/results.json", "w"))


if __name__ == "__main__":
    main()
