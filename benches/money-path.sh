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
export PAYD_ENV=development PAYD_BOOTSTRAP_ADMIN_EMAIL=admin@payd.local PAYD_BOOTSTRAP_ADMIN_PASSWORD=admin-pass-123 \
  PAYD_TELEMETRY__LOG_LEVEL=warn PAYD_SERVER__PORT=$PORT PAYD_CONFIG_DIR=$PWD/config \
  PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false PAYD_RATE_LIMITS__ENABLED=false \
  PAYD_STATS__INTERVAL_MS=0
pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
trap stop EXIT

# serve DB: a payd on database DB (created and migrated on start).
serve() {
  stop
  export PAYD_DATABASE__URL="postgres://postgres@127.0.0.1:5432/$1"
  "$BIN/payd" serve >"target/money-path-$1.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
}
load() {
  local name=$1; shift
  echo "== $(date +%T) $name: $*" | tee -a "$OUT"
  "$BIN/payd-load" --base-url "http://127.0.0.1:$PORT" --no-verify "$@" 2>&1 \
    | grep -E '^(requests|retries|throughput|latency|by status|history)|history:' | sed "s/^/[$name] /" | tee -a "$OUT"
}

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
