#!/usr/bin/env bash
# Spark reads a partitioned export of journeydb (issue 12). Not part of .ci/run (pyspark is a
# ~430 MB download and Spark's start takes a while); run it by hand:
#   scripts/interop-spark.sh [CUSTOMERS]   (default 200000)
# Installs pyspark with pip when missing (Java 17 is on these machines), builds journeydb, runs the
# demo into a kept database, exports its tables as 16 hash buckets each with
# `journeydb export --partition-by-hash 16`, and has Spark (local mode) read the buckets and compare
# counts, per-column non-NULL counts, min and max with journeydb, and every key's bucket with the
# documented hash (scripts/interop_spark.py). Exits non-zero on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
PYSPARK_VERSION=4.0.1
if ! python3 -c "import pyspark" 2>/dev/null; then
  echo "installing pyspark $PYSPARK_VERSION with pip"
  python3 -m pip install --quiet --disable-pip-version-check "pyspark==$PYSPARK_VERSION"
fi
command -v java >/dev/null || { echo "error: Spark needs Java 17 (java not found)" >&2; exit 1; }
cargo build --release --locked -p journeydb
J=$PWD/target/release/journeydb
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$J" demo --customers "$N" --days 3 --dir "$W/db" --keep --report "$W/report.html" >/dev/null
TABLES="behaviours profiles onboarding_state onboarding_state_activations"
for t in $TABLES; do
  "$J" export --db "$W/db" --table "$t" --out "$W/out/$t" --partition-by-hash 16
done
python3 scripts/interop_spark.py "$J" "$W/db" "$W/out" $TABLES
