"""PostgreSQL drivers we did not write against `journeydb serve`: connect, introspect, and insert
and read back values with quotes through bound parameters. Usage: drivers.py HOST PORT PASSWORD.
Every check raises on failure; the last line printed is a summary."""
import asyncio
import sys

host, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
NASTY = [
    "O'Brien",
    "q', 999), ('evil', 'x",
    "zzz' OR '1'='1",
    "back\\slash\\",
    "-- not a comment",
    "/* not */ a comment",
    "$1 $$dollar$$",
    "tab\tnew\nline",
    "unicode é 日本 🚀",
    "",
]
checked = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    checked.append(what)


def fresh(cur, name, run=None):
    run = run or cur.execute
    run(f"DROP TABLE IF EXISTS {name}")
    run(f"CREATE TABLE {name} (customer_id VARCHAR PRIMARY KEY, v VARCHAR MERGE LAST, n BIGINT MERGE SUM)")


def round_trip(driver, cur, name, mark):
    """Insert every value with parameters (marks %s / $n), read each back by parameter."""
    for i, v in enumerate(NASTY):
        cur.execute(f"INSERT INTO {name} VALUES ({mark(1)}, {mark(2)}, {mark(3)})", (f"k{i}", v, -i))
    cur.execute(f"SELECT count(*) FROM {name}")
    check(cur.fetchone()[0] == len(NASTY), f"{driver}: one row per inserted value")
    for i, v in enumerate(NASTY):
        cur.execute(f"SELECT v, n FROM {name} WHERE customer_id = {mark(1)}", (f"k{i}",))
        row = cur.fetchone()
        check(row[0] == v and row[1] == -i, f"{driver}: {v!r} reads back exactly")
        cur.execute(f"SELECT count(*) FROM {name} WHERE v = {mark(1)}", (v,))
        check(cur.fetchone()[0] == 1, f"{driver}: WHERE v = param matches {v!r} once")
    cur.execute(f"SELECT count(*) FROM {name} WHERE customer_id = 'evil'")
    check(cur.fetchone()[0] == 0, f"{driver}: no injected row")


def psycopg2_test():
    import psycopg2

    conn = psycopg2.connect(host=host, port=port, user="u", password=password, dbname="journeydb")
    conn.autocommit = True
    cur = conn.cursor()
    fresh(cur, "drv_psycopg2")
    round_trip("psycopg2", cur, "drv_psycopg2", lambda i: "%s")
    # Transactions as the driver opens them by default (BEGIN before the first statement).
    conn.autocommit = False
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM drv_psycopg2")
    check(cur.fetchone()[0] == len(NASTY), "psycopg2: query inside the driver's BEGIN")
    conn.commit()
    # CancelRequest with the connection's key really stops the running statement.
    conn.autocommit = True
    import threading
    import time

    cur = conn.cursor()
    timer = threading.Timer(0.3, conn.cancel)
    timer.start()
    t0 = time.monotonic()
    try:
        cur.execute("SELECT pg_sleep(30)")
        raise AssertionError("psycopg2: pg_sleep(30) was not cancelled")
    except psycopg2.errors.QueryCanceled:
        pass
    check(time.monotonic() - t0 < 5, "psycopg2: cancel stops the statement within seconds")
    cur.execute("SELECT 1")
    check(cur.fetchone()[0] == 1, "psycopg2: the connection is usable after a cancel")
    conn.close()


def psycopg3_test():
    import psycopg

    for prepare in (False, True):
        with psycopg.connect(host=host, port=port, user="u", password=password, dbname="journeydb", autocommit=True) as conn:
            name = f"drv_psycopg_{int(prepare)}"
            cur = conn.cursor()
            fresh(cur, name)

            class Cur:
                def execute(self, sql, params=()):
                    # Server-side parameters through the extended protocol, prepared or not.
                    cur.execute(sql, params, prepare=prepare)

                def fetchone(self):
                    return cur.fetchone()

            round_trip(f"psycopg (prepare={prepare})", Cur(), name, lambda i: "%s")
            cur.execute("SELECT current_schema(), current_database(), version()")
            row = cur.fetchone()
            check(row[0] == "public" and row[1] == "journeydb" and "journeydb" in row[2], "psycopg: connect-time functions")


def pg8000_test():
    import pg8000.native

    conn = pg8000.native.Connection("u", host=host, port=port, password=password, database="journeydb")
    conn.run("DROP TABLE IF EXISTS drv_pg8000")
    conn.run("CREATE TABLE drv_pg8000 (customer_id VARCHAR PRIMARY KEY, v VARCHAR MERGE LAST, n BIGINT MERGE SUM)")
    for i, v in enumerate(NASTY):
        conn.run("INSERT INTO drv_pg8000 VALUES (:k, :v, :n)", k=f"k{i}", v=v, n=-i)
    check(conn.run("SELECT count(*) FROM drv_pg8000")[0][0] == len(NASTY), "pg8000: one row per value")
    for i, v in enumerate(NASTY):
        rows = conn.run("SELECT v, n FROM drv_pg8000 WHERE customer_id = :k", k=f"k{i}")
        check(rows == [[v, -i]], f"pg8000: {v!r} reads back exactly")
        check(conn.run("SELECT count(*) FROM drv_pg8000 WHERE v = :v", v=v)[0][0] == 1, f"pg8000: WHERE v = {v!r}")
    conn.close()


async def asyncpg_main():
    import asyncpg

    conn = await asyncpg.connect(host=host, port=port, user="u", password=password, database="journeydb")
    await conn.execute("DROP TABLE IF EXISTS drv_asyncpg")
    await conn.execute("CREATE TABLE drv_asyncpg (customer_id VARCHAR PRIMARY KEY, v VARCHAR MERGE LAST, n BIGINT MERGE SUM)")
    for i, v in enumerate(NASTY):
        await conn.execute("INSERT INTO drv_asyncpg VALUES ($1, $2, $3)", f"k{i}", v, -i)
    check(await conn.fetchval("SELECT count(*) FROM drv_asyncpg") == len(NASTY), "asyncpg: one row per value")
    for i, v in enumerate(NASTY):
        row = await conn.fetchrow("SELECT v, n FROM drv_asyncpg WHERE customer_id = $1", f"k{i}")
        check(row["v"] == v and row["n"] == -i, f"asyncpg: {v!r} reads back exactly")
        check(await conn.fetchval("SELECT count(*) FROM drv_asyncpg WHERE v = $1", v) == 1, f"asyncpg: WHERE v = {v!r}")
    # asyncpg cancels a statement that runs past its timeout (CancelRequest), and goes on.
    try:
        await conn.fetchval("SELECT pg_sleep(30)", timeout=0.5)
        raise AssertionError("asyncpg: the timeout did not fire")
    except asyncio.TimeoutError:
        pass
    check(await conn.fetchval("SELECT 2") == 2, "asyncpg: usable after a cancelled statement")
    # A cursor fetches in pages: Execute with a row limit, PortalSuspended between pages.
    async with conn.transaction():
        got = [r["customer_id"] async for r in conn.cursor("SELECT customer_id FROM drv_asyncpg ORDER BY customer_id", prefetch=3)]
    check(got == sorted(f"k{i}" for i in range(len(NASTY))), f"asyncpg: a cursor with prefetch=3 returns every row once ({got})")
    cur = None
    async with conn.transaction():
        cur = await conn.cursor("SELECT customer_id FROM drv_asyncpg ORDER BY customer_id")
        first = await cur.fetch(4)
        rest = await cur.fetch(100)
    check([r[0] for r in first + rest] == sorted(f"k{i}" for i in range(len(NASTY))), "asyncpg: fetch(4) then the rest")
    # Analytics through the extended protocol: a join on the key, GROUP BY, HAVING and parameters.
    await conn.execute("DROP TABLE IF EXISTS drv_prof")
    await conn.execute("CREATE TABLE drv_prof (customer_id VARCHAR PRIMARY KEY, country VARCHAR)")
    for i in range(len(NASTY)):
        await conn.execute("INSERT INTO drv_prof VALUES ($1, $2)", f"k{i}", "US" if i % 2 else "DE")
    rows = await conn.fetch(
        "SELECT p.country, count(*) AS c, sum(s.n) AS total FROM drv_asyncpg s JOIN drv_prof p USING (customer_id) "
        "WHERE s.n <= $1 GROUP BY p.country HAVING count(*) >= $2 ORDER BY p.country", 0, 1)
    want = [(c, sum(1 for i in range(len(NASTY)) if (i % 2 == 1) == (c == "US")),
             sum(-i for i in range(len(NASTY)) if (i % 2 == 1) == (c == "US"))) for c in ("DE", "US")]
    check([tuple(r) for r in rows] == want, f"asyncpg: GROUP BY over a join with parameters ({[tuple(r) for r in rows]} vs {want})")
    summary = await conn.fetch("SUMMARIZE drv_prof")
    check([r["column_name"] for r in summary] == ["customer_id", "country"] and summary[1]["approx_unique"] == 2,
          "asyncpg: SUMMARIZE")
    await conn.close()


def sqlalchemy_test():
    import sqlalchemy as sa

    for url in (
        f"postgresql+psycopg2://u:{password}@{host}:{port}/journeydb",
        f"postgresql+psycopg://u:{password}@{host}:{port}/journeydb",
    ):
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS drv_sqlalchemy"))
            conn.execute(sa.text(
                "CREATE TABLE drv_sqlalchemy (customer_id VARCHAR PRIMARY KEY, stage1 TIMESTAMP MERGE MIN, "
                "score DOUBLE MERGE MAX, n BIGINT MERGE SUM, active BOOLEAN MERGE LAST)"))
            conn.execute(sa.text("INSERT INTO drv_sqlalchemy (customer_id, n) VALUES (:k, :n)"), {"k": "O'Brien", "n": 5})
            got = conn.execute(sa.text("SELECT n FROM drv_sqlalchemy WHERE customer_id = :k"), {"k": "O'Brien"}).scalar()
            check(got == 5, f"sqlalchemy ({url.split(':')[0]}): parameter round trip")
        insp = sa.inspect(engine)
        names = insp.get_table_names()
        check("drv_sqlalchemy" in names, f"sqlalchemy: get_table_names lists the new table ({names})")
        cols = {c["name"]: c for c in insp.get_columns("drv_sqlalchemy")}
        check(list(cols) == ["customer_id", "stage1", "score", "n", "active"], f"sqlalchemy: get_columns names ({list(cols)})")
        types = {n: type(c["type"]).__name__ for n, c in cols.items()}
        check(types == {"customer_id": "VARCHAR", "stage1": "TIMESTAMP", "score": "DOUBLE_PRECISION", "n": "BIGINT", "active": "BOOLEAN"}, f"sqlalchemy: get_columns types ({types})")
        check(cols["customer_id"]["nullable"] is False and cols["n"]["nullable"] is True, "sqlalchemy: nullability")
        engine.dispose()


psycopg2_test()
psycopg3_test()
pg8000_test()
asyncio.run(asyncpg_main())
sqlalchemy_test()
print(f"drivers: {len(checked)} checks passed")
