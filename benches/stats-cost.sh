#!/usr/bin/env bash
# What the statistics rollup job costs the money path (docs/benchmarks.md, "Statistics"): uniform
# transfers on one database with the job off (stats.interval_ms = 0) and on (every 1 s), alternated,
# the job caught up before each measured run. Ledger only (relay and consumers off), release build.
#
#   cargo build --release --bins && benches/stats-cost.sh      # results in target/stats-cost.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18111}
OUT=${OUT:-target/stats-cost.txt}
SECS=${SECS:-15s}
ROUNDS=${ROUNDS:-2}
CONN=${CONN:-128}
INTERVALS=${INTERVALS:-0 1000}
DB=${DB:-payd_stats_cost_$(date +%s)}
export PAYD_ENV=development PAYD_BOOTSTRAP_ADMIN_EMAIL=admin@payd.local PAYD_BOOTSTRAP_ADMIN_PASSWORD=admin-pass-123 \
  PAYD_TELEMETRY__LOG_LEVEL=warn PAYD_SERVER__PORT=$PORT PAYD_CONFIG_DIR=$PWD/config \
  PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false PAYD_RATE_LIMITS__ENABLED=false \
  PAYD_DATABASE__URL="postgres://postgres@127.0.0.1:5432/$DB"
URL="postgres://postgres@127.0.0.1:5432/$DB"
CARDS=target/stats-cost-cards-$DB.txt
pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
trap stop EXIT
serve() {
  stop
  PAYD_STATS__INTERVAL_MS=$1 "$BIN/payd" serve >"target/stats-cost-$DB.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
}
caught_up() {
  for _ in $(seq 1 300); do
    [ "$(psql "$URL" -XAtc 'SELECT (SELECT upto FROM stats_watermark) >= (SELECT COALESCE(max(seq), 0) FROM operations)')" = t ] && return
    sleep 0.5
  done
}
load() {
  local name=$1; shift
  echo "== $(date +%T) $name" | tee -a "$OUT"
  "$BIN/payd-load" --base-url "http://127.0.0.1:$PORT" --no-verify "$@" 2>&1 \
    | grep -E '^(requests|throughput|latency)' | sed "s/^/[$name] /" | tee -a "$OUT"
}
mkdir -p target
serve 1000
load setup --scenario uniform --cards 2000 --cards-file "$CARDS" --requests 1
for r in $(seq 1 "$ROUNDS"); do
  for interval in $INTERVALS; do
    serve "$interval"
    sampler=""
    if [ "$interval" != 0 ]; then
      caught_up
      # Freshness: every 0.5 s, how old the oldest committed operation the rollups have not taken in is.
      ( while true; do psql "$URL" -XAtc "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) FROM operations \
          WHERE kind = ANY('{topup,withdrawal,transfer,payment,refund,reversal}') AND seq > (SELECT upto FROM stats_watermark)"; \
          sleep 0.5; done ) > "target/stats-cost-lag-$r.txt" 2>/dev/null &
      sampler=$!
    fi
    load "stats-interval-$interval-run-$r" --scenario uniform --cards 2000 --cards-file "$CARDS" --duration "$SECS" \
      --connections "$CONN" --warmup 2s
    if [ -n "$sampler" ]; then
      kill "$sampler" 2>/dev/null || true
      echo "[lag run $r] max seconds behind: $(sort -g "target/stats-cost-lag-$r.txt" | tail -1)" | tee -a "$OUT"
    fi
  done
done
caught_up
echo "lag after the last run: watermark $(psql "$URL" -XAtc 'SELECT upto FROM stats_watermark') of $(psql "$URL" -XAtc 'SELECT max(seq) FROM operations')" | tee -a "$OUT"
"$BIN/payd" verify | tail -4 | tee -a "$OUT"
echo "results in $OUT"
