#!/usr/bin/env bash
# History-size comparison (docs/benchmarks.md, "Retries and history"): transfers and merchant payments
# on a fresh, never-analysed database against the same on a database holding HISTORY prior operations
# (payd-load --history: loaded server-side, then ANALYZE), and the retry curve interleaved (0 % and
# 10 % concurrent retries alternated, so the growth of the tables does not favour either).
# Ledger only, release build, one payd.   cargo build --release --bins && benches/money-path-history.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18092}
OUT=${OUT:-target/money-path-history.txt}
SECS=${SECS:-15s}
HISTORY=${HISTORY:-1000000}
LOG_PREFIX=money-path
. benches/lib.sh
mkdir -p target
s=$(date +%s)
for h in 0 "$HISTORY"; do
  db=payd_h${h}_$s
  serve "$db"
  cards=target/money-path-cards-$db.txt
  extra=(); [ "$h" != 0 ] && extra=(--history "$h" --database-url "$PAYD_DATABASE__URL")
  load "merchant-h$h" --scenario merchant --cards 1000 --duration "$SECS" --connections 128 --warmup 2s "${extra[@]}"
  load "setup-h$h" --scenario uniform --cards 2000 --cards-file "$cards" --requests 1
  for share in 0 0.1 0 0.1; do
    load "uniform-h$h-retry$share" --scenario uniform --cards 2000 --cards-file "$cards" --duration "$SECS" \
      --connections 128 --warmup 2s --retry-share "$share"
  done
done
echo "results in $OUT"
