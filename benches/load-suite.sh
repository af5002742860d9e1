#!/usr/bin/env bash
# The load runs behind docs/benchmarks.md, one after the other: ledger only and the default
# configuration (relay, notifier, e-mails and webhooks in the process, notification preferences at
# their defaults), each with uniform transfers (pgbench TPC-B in the same payd-load run, for the
# ratio), a hot pair of cards, merchant payments into one merchant and an open loop at 2,000
# transfers/s — first on a fresh database, then on one holding HISTORY prior operations (payd-load
# --history: transfers loaded before the first run, payments into the merchant before the merchant
# runs, then ANALYZE). Each run starts its own payd (release build) with the run's environment,
# waits until it is ready, drives it with payd-load and prints payd-load's summary lines prefixed with
# the run name and the machine's load average.
#
#   cargo build --release --bins && benches/load-suite.sh            # results in target/load-suite.txt
#   SECS=10s HISTORY=0 BIN=target/release benches/load-suite.sh      # shorter, fresh database only
#   PASSES=1000000 benches/load-suite.sh                             # only the 1,000,000-operation pass
#
# Needs PostgreSQL and Redis as `make services` starts them; about 8 minutes per database with the
# default SECS=15s (the machine may be shared: keep runs short). Not part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18080}
OUT=${OUT:-target/load-suite.txt}
SECS=${SECS:-15s}
HISTORY=${HISTORY:-1000000}
CARDS_N=${CARDS_N:-10000}
LEDGER_ONLY=(PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false)
DEFAULT=(PAYD_EVENTS__RELAY_ENABLED=true PAYD_EVENTS__CONSUMERS_ENABLED=true)
export PAYD_ENV=development PAYD_BOOTSTRAP_ADMIN_EMAIL=admin@payd.local PAYD_BOOTSTRAP_ADMIN_PASSWORD=admin-pass-123 \
  PAYD_TELEMETRY__LOG_LEVEL=warn PAYD_SERVER__PORT=$PORT PAYD_CONFIG_DIR=$PWD/config PAYD_RATE_LIMITS__ENABLED=false \
  PAYD_STATS__INTERVAL_MS=0
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
  echo "== $(date +%T) $name: ${envs[*]} $* (load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT"
  "$BIN/payd-load" --base-url "http://127.0.0.1:$PORT" --pid "$pid" "$@" 2>&1 \
    | grep -E '^(requests|throughput|latency|by status|verify|pgbench|ratio|payd rss)|history:' \
    | sed "s/^/[$name] /" | tee -a "$OUT"
}

# Waits until the relay and the consumers have worked off the outbox and the e-mail queue.
drain() {
  for _ in $(seq 1 120); do
    left=$(psql "$PAYD_DATABASE__URL" -XAtc \
      "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL) + (SELECT count(*) FROM email_jobs WHERE status = 'pending')")
    [ "$left" = "0" ] && return 0
    sleep 5
  done
}

mkdir -p target
stamp=$(date +%s)
for h in ${PASSES:-0 $([ "$HISTORY" != 0 ] && echo "$HISTORY")}; do
  tag=h$h
  db=${BENCH_DB:-payd_bench}_${tag}_$stamp
  export PAYD_DATABASE__URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
  CARDS=target/load-suite-cards-$db.txt
  hist=(); [ "$h" != 0 ] && hist=(--history "$h" --database-url "$PAYD_DATABASE__URL")
  U=(--scenario uniform --cards "$CARDS_N" --cards-file "$CARDS" --no-verify)
  M=(--scenario merchant --cards 1000 --duration "$SECS" --connections 256 --warmup 3s --no-verify)
  run "setup-$tag" "${LEDGER_ONLY[@]}" -- "${U[@]}" --requests 1 "${hist[@]}"
  run "uniform-ledger-$tag" "${LEDGER_ONLY[@]}" -- "${U[@]}" --duration "$SECS" --connections 256 --warmup 3s --pgbench
  run "open2000-ledger-$tag" "${LEDGER_ONLY[@]}" -- "${U[@]}" --duration "$SECS" --connections 512 --rate 2000 --warmup 3s
  run "hot-ledger-$tag" "${LEDGER_ONLY[@]}" -- --scenario hot --cards 2 --duration "$SECS" --connections 128 --warmup 3s --no-verify
  run "merchant-ledger-$tag" "${LEDGER_ONLY[@]}" -- "${M[@]}" "${hist[@]}"
  # Default configuration: first let the relay and consumers work off what the ledger-only runs left.
  run "drain-$tag" "${DEFAULT[@]}" -- "${U[@]}" --requests 1
  drain
  run "uniform-default-$tag" "${DEFAULT[@]}" -- "${U[@]}" --duration "$SECS" --connections 256 --warmup 3s --pgbench
  run "hot-default-$tag" "${DEFAULT[@]}" -- --scenario hot --cards 2 --duration "$SECS" --connections 128 --warmup 3s --no-verify
  run "merchant-default-$tag" "${DEFAULT[@]}" -- "${M[@]}"
  run "open2000-default-$tag" "${DEFAULT[@]}" -- "${U[@]}" --duration "$SECS" --connections 512 --rate 2000 --warmup 3s
done
echo "results in $OUT"
