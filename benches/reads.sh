#!/usr/bin/env bash
# Reads (docs/benchmarks.md, "Reads"): the read mix (balance 50 %, card 15 %, statement page 15 %, the
# card's transfer list 10 %, /auth/me 10 %) and the mixed one (10 reads : 1 transfer) at 32 and 128
# connections, driven by wrk (benches/mixed.lua: a light generator, so payd gets most of the 2 cores)
# and by payd-load (--scenario reads / mixed: per-route status counts), plus wrk on single routes, on a
# fresh database and on one with 1,000,000 prior operations (payd-load --history, loaded then
# ANALYZEd). Ledger only (relay and consumers off), release build, one payd.
#
#   cargo build --release --bins && benches/reads.sh        # results in target/reads.txt
#
# Needs PostgreSQL and Redis as `make services` starts them, and wrk for the single-route runs (skipped
# without it; `make setup-test` installs it); about 8 minutes. Not part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18096}
OUT=${OUT:-target/reads.txt}
SECS=${SECS:-15s}
WRK_SECS=${WRK_SECS:-10s}
HISTORY=${HISTORY:-1000000}
CARDS_N=${CARDS_N:-2000}
LOG_PREFIX=reads
. benches/lib.sh
single() {
  local name=$1 path=$2 conns=$3
  command -v wrk >/dev/null || { echo "[wrk] not installed; skipped" | tee -a "$OUT"; return; }
  echo "== $(date +%T) wrk $name ($conns connections, load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT"
  wrk -t2 -c"$conns" -d"$WRK_SECS" --latency -H "Authorization: Bearer $TOKEN" "$BASE$path" 2>&1 \
    | grep -E 'Requests/sec|Latency |99%|Non-2xx' | sed "s/^/[wrk $name c$conns] /" | tee -a "$OUT"
}
# mix DB MODE CARDS CONNS: benches/mixed.lua (MODE reads or mixed) over every card of the run.
mix() {
  local db=$1 mode=$2 cards=$3 conns=$4
  command -v wrk >/dev/null || { echo "[wrk] not installed; skipped" | tee -a "$OUT"; return; }
  echo "== $(date +%T) wrk $db $mode mix ($conns connections, load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT"
  wrk -t2 -c"$conns" -d"$WRK_SECS" --latency -s benches/mixed.lua "$BASE" -- "$TOKEN" "$cards" "$mode" "$(date +%s%N)" 2>&1 \
    | grep -E 'Requests/sec|Latency |99%|Non-2xx' | sed "s/^/[wrk $db $mode c$conns] /" | tee -a "$OUT"
}
round() {
  local db=$1; shift
  local cards=target/reads-cards-$db.txt
  load "$db setup" --scenario uniform --cards "$CARDS_N" --cards-file "$cards" --requests 1 "$@"
  # Some history on every card (statements, transfer lists), then the measured runs.
  load "$db mixed-c32" --scenario mixed --cards "$CARDS_N" --cards-file "$cards" --duration "$SECS" --connections 32 --warmup 3s
  load "$db reads-c32" --scenario reads --cards "$CARDS_N" --cards-file "$cards" --duration "$SECS" --connections 32 --warmup 2s
  TOKEN=$(curl -sf "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"admin@payd.local","password":"admin-pass-123"}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  for c in 32 128; do
    mix "$db" reads "$cards" $c
    mix "$db" mixed "$cards" $c
  done
  local card; card=$(head -n1 "$cards")
  single "$db healthz" /healthz 32
  for c in 32 128; do
    single "$db balance" "/api/v1/cards/$card/balance" $c
  done
  single "$db card" "/api/v1/cards/$card" 32
  single "$db me" /api/v1/auth/me 32
  single "$db statement" "/api/v1/cards/$card/statement?limit=20" 32
  single "$db transfers" "/api/v1/transfers?card_id=$card&limit=20" 32
}

mkdir -p target
stamp=$(date +%s)
serve "payd_reads_fresh_$stamp"
round "payd_reads_fresh_$stamp"
serve "payd_reads_hist_$stamp"
load "history" --scenario uniform --cards 2 --requests 1 --history "$HISTORY" --database-url "$PAYD_DATABASE__URL"
round "payd_reads_hist_$stamp"
echo "results in $OUT"
