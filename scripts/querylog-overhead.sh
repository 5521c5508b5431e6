#!/usr/bin/env bash
# The query log's overhead on set-operation counts (issue 16, target <= 2%): the same 300 COUNT
# queries (INTERSECT / EXCEPT / UNION over the demo's profiles and behaviours) sent by one client
# to `journeydb serve` with the log on (--query-log-days 7) and off (0), ROUNDS times each,
# alternating, on copies of one database. Prints each round's seconds and the ratio of the medians.
#   scripts/querylog-overhead.sh [CUSTOMERS=1000000] [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
customers="${1:-1000000}"
rounds="${2:-5}"
cargo build --release --quiet --bin journeydb
bin=target/release/journeydb
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" demo --customers "$customers" --days 1 --dir "$work/db" --keep --report "$work/r.html" >/dev/null
for i in $(seq 1 100); do
  echo "SELECT count(*) FROM (SELECT customer_id FROM profiles WHERE plan = 'pro' INTERSECT SELECT customer_id FROM behaviours WHERE purchase IS NOT NULL) t;"
  echo "SELECT count(*) FROM (SELECT customer_id FROM profiles EXCEPT SELECT customer_id FROM behaviours WHERE churned IS NOT NULL) t;"
  echo "SELECT count(*) FROM (SELECT customer_id FROM behaviours WHERE app_open IS NOT NULL UNION SELECT customer_id FROM profiles WHERE age > 40) t;"
done > "$work/q.sql"
run() { # $1 = query-log-days; prints the seconds the 300 queries took
  rm -rf "$work/copy"; cp -r "$work/db" "$work/copy"
  "$bin" serve --db "$work/copy" --listen 127.0.0.1:7799 --pg-listen off --query-log-days "$1" >"$work/serve.out" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" sql --connect 127.0.0.1:7799 -f "$work/q.sql" >/dev/null
  t1=$(date +%s.%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}' 
}
on=(); off=()
for r in $(seq 1 "$rounds"); do
  off+=("$(run 0)"); on+=("$(run 7)")
  echo "round $r: log off ${off[-1]} s, log on ${on[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_on=$(median "${on[@]}"); m_off=$(median "${off[@]}")
echo "median: log off $m_off s, log on $m_on s, ratio $(awk -v a="$m_on" -v b="$m_off" 'BEGIN {printf "%.4f", a / b}')"
