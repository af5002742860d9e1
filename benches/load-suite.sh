#!/usr/bin/env bash
# The load runs behind docs/benchmarks.md ("Current figures"), one after the other against a fresh
# database. Each run starts its own payd (release build) with the run's environment, waits until it
# is ready, drives it with payd-load and prints payd-load's summary lines prefixed with the run name.
#
#   cargo build --release --bins && benches/load-suite.sh            # results in target/load-suite.txt
#   BENCH_DB=payd_bench_x BIN=target/release benches/load-suite.sh
#
# Needs PostgreSQL and Redis as `make services` starts them; takes about 5 minutes. Not part of
# `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
DB=${BENCH_DB:-payd_bench_$(date +%s)}
PORT=${BENCH_PORT:-18080}
OUT=${OUT:-target/load-suite.txt}
CARDS=target/load-suite-cards-$DB.txt
LEDGER_ONLY=(PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false)
export PAYD_ENV=development PAYD_BOOTSTRAP_ADMIN_EMAIL=admin@payd.local PAYD_BOOTSTRAP_ADMIN_PASSWORD=admin-pass-123 \
  PAYD_DATABASE__URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" PAYD_TELEMETRY__LOG_LEVEL=warn \
  PAYD_SERVER__PORT=$PORT PAYD_CONFIG_DIR=$PWD/config PAYD_RATE_LIMITS__ENABLED=false
pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
trap stop EXIT

# run NAME [VAR=value …] -- payd-load arguments
run() {
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  stop
  env "${envs[@]}" "$BIN/payd" serve >"target/load-suite-$name.log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.5; done
  echo "== $(date +%T) $name: ${envs[*]} $*" | tee -a "$OUT"
  "$BIN/payd-load" --base-url "http://127.0.0.1:$PORT" --pid "$pid" "$@" 2>&1 \
    | grep -E '^(requests|throughput|latency|by status|verify|pgbench|ratio|payd rss)' | sed "s/^/[$name] /" | tee -a "$OUT"
}

mkdir -p target
run setup "${LEDGER_ONLY[@]}" -- --scenario uniform --cards 10000 --cards-file "$CARDS" --requests 1 --no-verify
U=(--scenario uniform --cards 10000 --cards-file "$CARDS" --no-verify)
run uniform-ledger "${LEDGER_ONLY[@]}" -- "${U[@]}" --duration 20s --connections 256 --warmup 3s --pgbench
run open2000-ledger "${LEDGER_ONLY[@]}" -- "${U[@]}" --duration 20s --connections 512 --rate 2000 --warmup 3s
run hot-ledger "${LEDGER_ONLY[@]}" -- --scenario hot --cards 2 --duration 15s --connections 128 --warmup 3s --no-verify
run merchant-ledger "${LEDGER_ONLY[@]}" -- --scenario merchant --cards 10000 --duration 20s --connections 256 --warmup 3s --no-verify
# Events on: first let the relay and consumers work off what the ledger-only runs left in the outbox.
run drain -- "${U[@]}" --requests 1
for _ in $(seq 1 120); do
  left=$(psql "postgres://postgres@127.0.0.1:5432/$DB" -XAtc \
    "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL) + (SELECT count(*) FROM email_jobs WHERE status = 'pending')")
  [ "$left" = "0" ] && break
  sleep 5
done
run uniform-events -- "${U[@]}" --duration 20s --connections 256 --warmup 3s
run open2000-events -- --scenario uniform --cards 10000 --cards-file "$CARDS" --duration 20s --connections 512 --rate 2000 --warmup 3s
echo "results in $OUT"
