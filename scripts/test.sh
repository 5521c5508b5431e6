#!/usr/bin/env bash
# Runs every test of journeydb: the one command README.md documents and .ci/run calls.
# Installs what the tests need beyond cargo: the Python `duckdb` and `pyarrow` packages (the oracle
# of the differential SQL test and the DuckDB side of the bench smoke test), `psql` (Debian's
# postgresql-client), `openssl` (test certificates), pgjdbc (libpostgresql-jdbc-java, run with the
# machine's Java) and the PostgreSQL drivers psycopg2, psycopg 3, pg8000, asyncpg and SQLAlchemy
# (tools/tests/pg_clients.rs runs them against `journeydb serve`). Then checks the crate layering
# (scripts/layering.py) and runs `cargo test --workspace`, and ends with one line totalling every test binary's results.
set -uo pipefail
cd "$(dirname "$0")/.."
DUCKDB_VERSION=2.0.1
if ! python3 -c "import duckdb, pyarrow, sys; sys.exit(duckdb.__version__ != '$DUCKDB_VERSION')" 2>/dev/null; then
  echo "installing the Python packages duckdb $DUCKDB_VERSION and pyarrow (the DuckDB side of the differential test and the bench smoke test)"
  python3 -m pip install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION" pyarrow || {
    echo "error: could not install duckdb==$DUCKDB_VERSION and pyarrow with pip; the tests need them" >&2
    exit 1
  }
fi
if ! command -v psql >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 \
  || ! command -v java >/dev/null 2>&1 || [ ! -f /usr/share/java/postgresql.jar ]; then
  echo "installing postgresql-client, openssl, a JRE and pgjdbc (psql, test certificates and the JDBC driver, for the PostgreSQL protocol and TLS tests)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client openssl \
      default-jre-headless libpostgresql-jdbc-java >/dev/null; } || {
    echo "error: could not install postgresql-client, openssl, a JRE and libpostgresql-jdbc-java with apt-get; the tests need them" >&2
    exit 1
  }
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (the dashboard's test loads the page in a real headless browser)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || {
    echo "error: could not install chromium with apt-get; the dashboard test needs it" >&2
    exit 1
  }
fi
DRIVERS="psycopg2-binary==2.9.13 psycopg[binary]==3.3.9 pg8000==1.31.6 asyncpg==0.32.0 SQLAlchemy==2.1.9"
if ! python3 -c "import psycopg2, psycopg, pg8000, asyncpg, sqlalchemy" 2>/dev/null; then
  echo "installing the Python PostgreSQL drivers ($DRIVERS)"
  # shellcheck disable=SC2086
  python3 -m pip install --quiet --disable-pip-version-check $DRIVERS || {
    echo "error: could not install the PostgreSQL drivers with pip; the tests need them" >&2
    exit 1
  }
fi
# The crate layering (ARCHITECTURE.md): a dependency edge outside the allowed set fails the run.
python3 scripts/layering.py || exit 1
# No function over 100 lines without a `// long:` reason next to it.
python3 scripts/long_functions.py || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
