#!/usr/bin/env bash
# The money path as deployed (docs/benchmarks.md, "Retries and history"): the concurrent-retry curve
# (payd-load --retry-share) and merchant payments on a fresh database against the same after
# 1,000,000 prior payments into the same merchant (payd-load --history, loaded then ANALYZEd).
# Ledger only (relay and consumers off), release build, one payd, fresh databases.
#
#   cargo build --release --bins && benches/money-path.sh        # results in target/money-path.txt
#
# Needs PostgreSQL and Redis as `make services` starts them; about 6 minutes. Not part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18090}
OUT=${OUT:-target/money-path.txt}
SECS=${SECS:-15s}
HISTORY=${HISTORY:-1000000}
LOG_PREFIX=money-path
. benches/lib.sh

mkdir -p target
stamp=$(date +%s)
DB=payd_retry_$stamp
CARDS=target/money-path-cards-$DB.txt
serve "$DB"
load setup --scenario uniform --cards 2000 --cards-file "$CARDS" --requests 1
for share in 0 0.01 0.1 0.5 1; do
  load "retry-$share" --scenario uniform --cards 2000 --cards-file "$CARDS" --duration "$SECS" --connections 128 \
    --warmup 2s --retry-share "$share"
done

serve "payd_fresh_$stamp"
load merchant-fresh --scenario merchant --cards 1000 --duration "$SECS" --connections 128 --warmup 2s
serve "payd_hist_$stamp"
load merchant-history --scenario merchant --cards 1000 --duration "$SECS" --connections 128 --warmup 2s \
  --history "$HISTORY" --database-url "$PAYD_DATABASE__URL"
echo "results in $OUT"
