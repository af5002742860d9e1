#!/usr/bin/env bash
# What moving the event consumers off the API instance gives (docs/benchmarks.md, "API and worker
# roles"). One fresh database, 10,000 cards, the same closed-loop transfer load (payd-load uniform,
# 256 connections, 20 s) against:
#   all     one `payd serve --role all` (default settings: relay, consumers, senders in-process)
#   split   `payd serve --role api` (the load's target) + `payd serve --role worker` on the same database,
#           both on this machine's cores
#   api     `payd serve --role api` alone during the load — the worker on other hardware; a worker
#           started afterwards works off the backlog (its drain time is printed)
#   ledger  one instance with relay and consumers off (the ledger-only ceiling)
# Before each events run the outbox and e-mail queue are drained, so every run starts level.
#
#   cargo build --release --bins && benches/roles.sh          # results in target/roles.txt
#
# Needs PostgreSQL and Redis as `make services` starts them; takes about 6 minutes. Not part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
DB=${BENCH_DB:-payd_bench_roles_$(date +%s)}
PORT=${BENCH_PORT:-18080}
WORKER_PORT=${BENCH_WORKER_PORT:-18081}
OUT=${OUT:-target/roles.txt}
ROUNDS=${ROUNDS:-2}
CARDS=target/roles-cards-$DB.txt
URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
export PAYD_ENV=development PAYD_BOOTSTRAP_ADMIN_EMAIL=admin@payd.local PAYD_BOOTSTRAP_ADMIN_PASSWORD=admin-pass-123 \
  PAYD_DATABASE__URL="$URL" PAYD_TELEMETRY__LOG_LEVEL=warn PAYD_CONFIG_DIR=$PWD/config
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }
trap stop EXIT

start() { # start NAME PORT [VAR=value …]
  local name=$1 port=$2; shift 2
  env PAYD_SERVER__PORT="$port" "$@" "$BIN/payd" serve >"target/roles-$name.log" 2>&1 </dev/null &
  pids+=($!)
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0; sleep 0.5; done
  echo "$name did not become ready" >&2; exit 1
}

drain() {
  for _ in $(seq 1 180); do
    left=$(psql "postgres://postgres@127.0.0.1:5432/$DB" -XAtc \
      "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL) + (SELECT count(*) FROM email_jobs WHERE status = 'pending')")
    [ "$left" = "0" ] && return 0
    sleep 2
  done
  echo "backlog did not drain" >&2; exit 1
}

load() { # load NAME (against $PORT, the first started pid)
  echo "== $(date +%T) $1 (load average: $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT"
  "$BIN/payd-load" --base-url "http://127.0.0.1:$PORT" --pid "${pids[0]}" --scenario uniform --cards 10000 \
    --cards-file "$CARDS" --no-verify --duration 20s --connections 256 --warmup 3s 2>&1 \
    | grep -E '^(requests|throughput|latency|by status|payd rss)' | sed "s/^/[$1] /" | tee -a "$OUT"
}

mkdir -p target
start setup "$PORT" PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false
"$BIN/payd-load" --base-url "http://127.0.0.1:$PORT" --scenario uniform --cards 10000 --cards-file "$CARDS" \
  --requests 1 --no-verify >/dev/null
stop
for round in $(seq 1 "$ROUNDS"); do
  start drain "$PORT"; drain; stop
  start all "$PORT" PAYD_SERVER__ROLE=all
  load "all-r$round"
  stop
  start drain "$PORT"; drain; stop
  start api "$PORT" PAYD_SERVER__ROLE=api
  start worker "$WORKER_PORT" PAYD_SERVER__ROLE=worker
  load "split-api-r$round"
  stop
  start api "$PORT" PAYD_SERVER__ROLE=api
  load "api-alone-r$round"
  stop
  t0=$(date +%s); start drain "$PORT" PAYD_SERVER__ROLE=worker; drain; stop
  echo "[api-alone-r$round] worker drained the run's events and e-mails in $(( $(date +%s) - t0 )) s" | tee -a "$OUT"
  start ledger "$PORT" PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false
  load "ledger-r$round"
  stop
done
start drain "$PORT"; drain; stop
"$BIN/payd" verify | tail -n 3 | sed 's/^/[verify] /' | tee -a "$OUT"
echo "results in $OUT"
