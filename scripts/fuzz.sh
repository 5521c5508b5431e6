#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) and prints the executions each made.
#   scripts/fuzz.sh [SECONDS] [TARGET..]
# Seeds come from the repository (golden files, the .slt statements, a few PostgreSQL messages);
# corpora grow in fuzz/corpus/TARGET (not committed). A crash stops with its input in
# fuzz/artifacts/TARGET: fix it and keep the input in fuzz/regressions/TARGET/ (replayed by
# `scripts/fuzz.sh 0`, which is what CI runs: every regression input plus a short smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sql pg_session native_frame segment manifest wal)
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install --quiet --locked cargo-fuzz
fi
rustup toolchain list | grep -q nightly || { echo "error: the nightly toolchain is needed (rustup toolchain install nightly)" >&2; exit 1; }

seed() {
  local t=$1 dir=fuzz/corpus/$1
  mkdir -p "$dir"
  case $t in
    segment) cp storage/tests/golden/v1/seg/*.seg "$dir/" ;;
    manifest) cp storage/tests/golden/v1/manifest/*.manifest "$dir/" ;;
    wal) cp storage/tests/golden/v1/wal/*.wal "$dir/" ;;
    sql)
      # Every statement of the conformance files, one seed each.
      python3 - "$dir" <<'PY'
import glob, hashlib, os, sys
out = sys.argv[1]
for f in glob.glob("tests/slt/*.slt"):
    for block in open(f).read().split("\n\n"):
        lines = [l for l in block.splitlines() if l and not l.startswith(("#", "statement", "query", "control", "----"))]
        if lines:
            sql = "\n".join(lines).encode()
            open(os.path.join(out, hashlib.sha1(sql).hexdigest()), "wb").write(sql)
PY
      ;;
    pg_session)
      python3 - "$dir" <<'PY'
import os, struct, sys
out = sys.argv[1]
def msg(kind, body):
    return kind + struct.pack(">i", len(body) + 4) + body
def cstr(s):
    return s.encode() + b"\0"
seeds = {
    "simple": msg(b"Q", cstr("SELECT count(*) FROM t WHERE b IN (1, 2, 3)")),
    "catalog": msg(b"Q", cstr("SELECT c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname ~ '^t$' ORDER BY 1")),
    "extended": msg(b"P", cstr("s1") + cstr("SELECT e FROM t WHERE k = $1 AND b > $2") + struct.pack(">h", 0))
        + msg(b"D", b"S" + cstr("s1"))
        + msg(b"B", cstr("p1") + cstr("s1") + struct.pack(">h", 0) + struct.pack(">h", 2)
              + struct.pack(">i", 3) + b"k'1" + struct.pack(">i", 1) + b"5" + struct.pack(">h", 1) + struct.pack(">h", 1))
        + msg(b"E", cstr("p1") + struct.pack(">i", 0))
        + msg(b"C", b"P" + cstr("p1"))
        + msg(b"S", b""),
    "set_show": msg(b"Q", cstr("SET application_name = 'x'; SHOW application_name; BEGIN; ROLLBACK")),
}
for name, data in seeds.items():
    open(os.path.join(out, name), "wb").write(data)
PY
      ;;
    native_frame)
      printf '\x02SELECT 1' > "$dir/query"
      printf '\x01' > "$dir/ping"
      ;;
  esac
  if [ -d "fuzz/regressions/$t" ]; then cp fuzz/regressions/"$t"/* "$dir/" 2>/dev/null || true; fi
}

total_failed=0
for t in "${targets[@]}"; do
  seed "$t"
  log=$(mktemp)
  if [ "$seconds" = 0 ]; then
    # Replay the corpus and every kept regression input once, then a 10-second smoke run.
    args=(-max_total_time=10 -runs=200000)
  else
    args=(-max_total_time="$seconds")
  fi
  if (cd fuzz && cargo +nightly fuzz run -O "$t" "corpus/$t" -- -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 "${args[@]}") >"$log" 2>&1; then
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    echo "fuzz $t: ${runs:-?} executions, no crash"
  else
    total_failed=$((total_failed + 1))
    echo "fuzz $t: FAILED (see below; the input is in fuzz/artifacts/$t)"
    tail -40 "$log"
  fi
  rm -f "$log"
done
echo "fuzz: ${#targets[@]} targets, $total_failed failed"
[ "$total_failed" = 0 ]
