#!/usr/bin/env python3
"""Runs sqllogictest files against DuckDB (the Python package), as a second engine checking the
expected answers of journeydb's conformance files (tests/slt/). Files whose first lines say
`# journeydb-only: <reason>` are listed and skipped; `# journeydb: ...` directives are comments.
Values print as journeydb prints them: NULL, (empty) for '', true/false, timestamps as
`YYYY-MM-DD HH:MM:SS[.ffffff]`, doubles with at least one decimal. An expected error only has to be
an error (the messages are each engine's own).
  scripts/slt_duckdb.py FILE.slt..."""
import datetime
import os
import sys

import duckdb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from duckdb_oracle import interval_text  # noqa: E402 - one text of an interval for both scripts


def cell(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime.datetime):
        s = v.strftime("%Y-%m-%d %H:%M:%S")
        return s + (".%06d" % v.microsecond if v.microsecond else "")
    if isinstance(v, datetime.timedelta):
        return interval_text(v // datetime.timedelta(microseconds=1))
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            return "%.1f" % v
        return repr(v)
    s = str(v)
    return "(empty)" if s == "" else s


def records(text):
    """Yields (line, kind, header, sql, expected) for each statement and query record."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        at = i + 1
        i += 1
        if not line or line.startswith("#"):
            continue
        head = line.split()
        if head[0] not in ("statement", "query"):
            raise SystemExit(f"line {at}: unknown record {line!r}")
        sql = []
        while i < len(lines) and lines[i].strip() and lines[i].strip() != "----":
            sql.append(lines[i])
            i += 1
        expected = []
        if i < len(lines) and lines[i].strip() == "----":
            i += 1
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i].strip())
                i += 1
        yield at, head[0], head[1:], "\n".join(sql), expected


def run(path):
    text = open(path).read()
    con = duckdb.connect()
    failures = []
    n = 0
    for at, kind, head, sql, expected in records(text):
        n += 1
        want_error = head[:1] == ["error"]
        try:
            rel = con.execute(sql)
            rows = rel.fetchall() if kind == "query" else None
        except duckdb.Error as e:
            if not want_error:
                failures.append(f"{path}:{at}: DuckDB error: {e}\n{sql}")
            continue
        if want_error:
            failures.append(f"{path}:{at}: expected an error, DuckDB succeeded\n{sql}")
            continue
        if kind == "query":
            got = [" ".join(cell(v) for v in r) for r in rows]
            exp = list(expected)
            if "rowsort" in head:
                got.sort()
                exp.sort()
            if got != exp:
                failures.append(
                    f"{path}:{at}: wrong result\n{sql}\n--- expected\n" + "\n".join(exp) + "\n--- DuckDB\n" + "\n".join(got)
                )
    return n, failures


def main():
    ran, skipped, failures, total = [], [], [], 0
    for path in sys.argv[1:]:
        head = open(path).read().split("\n")[:5]
        only = [l for l in head if l.startswith("# journeydb-only:")]
        if only:
            skipped.append(f"{path} ({only[0][len('# journeydb-only:'):].strip()})")
            continue
        n, f = run(path)
        total += n
        ran.append(path)
        failures += f
    print(f"ran on DuckDB: {len(ran)} files, {total} records")
    for s in skipped:
        print(f"journeydb-only: {s}")
    if failures:
        print("\n\n".join(failures))
        sys.exit(1)


main()
