#!/usr/bin/env bash
# Resident memory of one payd holding CARDS_N cards (default 100,000) under a zipf workload, in the
# default configuration (relay, notifier, e-mails and webhooks in the process), with idle actors
# evicted after IDLE seconds (`ledger.idle_timeout_secs`). Prints, with the live actor gauges from
# /metrics and payd's VmRSS / VmHWM:
#   1. after start (nothing loaded),
#   2. after issuing and funding CARDS_N cards over HTTP (every card's actors were touched),
#   3. after a zipf transfer run of SECS at CONNECTIONS connections (payd-load's own summary),
#   4. after IDLE + 30 s without traffic (idle actors evicted),
#   5. after a second zipf run (actors reloaded on demand).
#
#   cargo build --release --bins && benches/memory.sh            # results in target/memory.txt
#   CARDS_N=20000 SECS=10s IDLE=30 benches/memory.sh             # shorter
#
# Needs PostgreSQL and Redis as `make services` starts them. Not part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18090}
OUT=${OUT:-target/memory.txt}
CARDS_N=${CARDS_N:-100000}
SECS=${SECS:-30s}
IDLE=${IDLE:-60}
CONNECTIONS=${CONNECTIONS:-64}
ZIPF_S=${ZIPF_S:-1.1}
db=payd_bench_memory_$(date +%s)
export PAYD_DATABASE__URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
export PAYD_ENV=development PAYD_BOOTSTRAP_ADMIN_EMAIL=admin@payd.local PAYD_BOOTSTRAP_ADMIN_PASSWORD=admin-pass-123 \
  PAYD_TELEMETRY__LOG_LEVEL=warn PAYD_SERVER__PORT=$PORT PAYD_CONFIG_DIR=$PWD/config PAYD_RATE_LIMITS__ENABLED=false \
  PAYD_EVENTS__RELAY_ENABLED=true PAYD_EVENTS__CONSUMERS_ENABLED=true PAYD_LEDGER__IDLE_TIMEOUT_SECS=$IDLE
mkdir -p target
"$BIN/payd" serve >"target/memory-payd.log" 2>&1 </dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done

report() {
  local gauges rss hwm
  gauges=$(curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E '^payd_state\{name="live_(account|card)_actors"\}' \
    | sed -E 's/^payd_state\{name="([a-z_]+)"\} /\1=/' | tr '\n' ' ')
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  printf '%s  %-34s rss %6.1f MiB  peak %6.1f MiB  %s(load average %s)\n' "$(date +%T)" "$1" \
    "$(echo "$rss / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)" "$gauges" "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
}
load() {
  "$BIN/payd-load" --base-url "http://127.0.0.1:$PORT" --pid "$pid" "$@" 2>&1 \
    | grep -E '^(requests|throughput|latency|by status|payd rss)|setup:' | sed 's/^/    /' | tee -a "$OUT"
}

echo "== $(date -u +%FT%TZ) memory: $CARDS_N cards, zipf s=$ZIPF_S, idle_timeout_secs=$IDLE, db $db" | tee -a "$OUT"
report "started"
CARDS=target/memory-cards-$db.txt
load --scenario zipf --zipf-s "$ZIPF_S" --cards "$CARDS_N" --cards-file "$CARDS" --requests 1 --no-verify
report "$CARDS_N cards issued and funded"
load --scenario zipf --zipf-s "$ZIPF_S" --cards "$CARDS_N" --cards-file "$CARDS" --duration "$SECS" \
  --connections "$CONNECTIONS" --warmup 2s --no-verify
report "after a $SECS zipf run"
sleep $((IDLE + 30))
report "idle $((IDLE + 30)) s (actors evicted)"
load --scenario zipf --zipf-s "$ZIPF_S" --cards "$CARDS_N" --cards-file "$CARDS" --duration "$SECS" \
  --connections "$CONNECTIONS" --warmup 2s --no-verify
report "after a second $SECS zipf run"
echo "results in $OUT"
