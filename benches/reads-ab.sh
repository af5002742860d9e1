#!/usr/bin/env bash
# Two builds of payd on the same database, alternated (A B A B …), on the routes that make a database
# trip: the statement page and the card's transfer list (wrk, 32 connections), plus the read mix and the
# 10 : 1 mix (benches/mixed.lua). For comparing a change on a busy machine: each run prints the load
# average, and the alternation spreads the other work on the machine over both builds.
#
#   benches/reads-ab.sh BIN_A BIN_B [ROUNDS]     # e.g. a build of main and of the branch; target/reads-ab.txt
#
# HISTORY=N loads N prior operations first (payd-load --history, then ANALYZE). The database is created
# and migrated by A; B applies its own newer migrations on its first start, and A runs on from there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
A=${1:?usage: benches/reads-ab.sh BIN_A BIN_B [ROUNDS]}
B=${2:?usage: benches/reads-ab.sh BIN_A BIN_B [ROUNDS]}
ROUNDS=${3:-2}
PORT=${BENCH_PORT:-18098}
OUT=${OUT:-target/reads-ab.txt}
WRK_SECS=${WRK_SECS:-8s}
CARDS_N=${CARDS_N:-2000}
HISTORY=${HISTORY:-0}
LOG_PREFIX=reads-ab
BIN=$A
. benches/lib.sh
mkdir -p target
db=payd_reads_ab_$(date +%s)
cards=target/reads-ab-cards-$db.txt
serve "$db"
load "setup" --scenario uniform --cards "$CARDS_N" --cards-file "$cards" --requests 20000 --connections 32
[ "$HISTORY" != 0 ] && load "history" --scenario uniform --cards 2 --requests 1 --history "$HISTORY" --database-url "$PAYD_DATABASE__URL"
card=$(head -n1 "$cards")
wrk_run() {
  local label=$1; shift
  echo "== $(date +%T) $label (load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT"
  wrk -t2 -c32 -d"$WRK_SECS" --latency "$@" 2>&1 | grep -E 'Requests/sec|99%|Non-2xx' | sed "s/^/[$label] /" | tee -a "$OUT"
}
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    BIN=$([ $side = A ] && echo "$A" || echo "$B")
    serve "$db"
    TOKEN=$(curl -sf "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
      -d '{"email":"admin@payd.local","password":"admin-pass-123"}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
    wrk_run "$side r$r statement" -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/cards/$card/statement?limit=20"
    wrk_run "$side r$r transfers" -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/transfers?card_id=$card&limit=20"
    wrk_run "$side r$r reads mix" -s benches/mixed.lua "$BASE" -- "$TOKEN" "$cards" reads "$(date +%s%N)"
    wrk_run "$side r$r 10:1 mix" -s benches/mixed.lua "$BASE" -- "$TOKEN" "$cards" mixed "$(date +%s%N)"
  done
done
stop
echo "results in $OUT"
