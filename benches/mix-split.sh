#!/usr/bin/env bash
# Where the two cores go in the read mixes (docs/benchmarks.md, "The account change feed"): the read
# mix and the 10:1 mix of benches/reads.sh (wrk + benches/mixed.lua, 32 connections, 2,000 cards),
# alternating, twice; for each 8-second run the CPU time per request of payd, of every PostgreSQL
# process, and of the whole machine (/proc/PID/stat and /proc/stat ticks before and after), and how
# busy the machine was (1.00 = both cores). Then the statement and balance read counters and the
# ledger's batch sizes over the whole run. Ledger only, release build, one payd, fresh database.
#
#   cargo build --release --bins && benches/mix-split.sh        # results in target/mix-split.txt
#
# Needs wrk and bc. Not part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18099}
OUT=${OUT:-target/mix-split.txt}
LOG_PREFIX=mix-split
. benches/lib.sh
mkdir -p target
HZ=$(getconf CLK_TCK)
ticks() { local t=0; for p in "$@"; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
pgpids() { pgrep -u postgres postgres | tr '\n' ' '; }
db=payd_mix_split_$(date +%s)
serve "$db"
cards=target/mix-split-cards.txt
load setup --scenario uniform --cards 2000 --cards-file "$cards" --requests 1 >/dev/null
TOKEN=$(curl -sf "$BASE/api/v1/auth/login" -H 'content-type: application/json' -d '{"email":"admin@payd.local","password":"admin-pass-123"}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
wrk -t2 -c32 -d4s -s benches/mixed.lua "$BASE" -- "$TOKEN" "$cards" mixed "$(date +%s%N)" >/dev/null 2>&1
for mode in reads mixed reads mixed; do
  c=32
  tot0=$(awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat); p0=$(ticks $pid); g0=$(ticks $(pgpids))
  wrk -t2 -c$c -d8s -s benches/mixed.lua "$BASE" -- "$TOKEN" "$cards" $mode "$(date +%s%N)" > target/mix-split-wrk.out 2>&1
  tot1=$(awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat); p1=$(ticks $pid); g1=$(ticks $(pgpids))
  rps=$(grep Requests/sec target/mix-split-wrk.out | awk '{print $2}')
  n=$(grep "requests in" target/mix-split-wrk.out | awk '{print $1}')
  echo "$mode c$c rps=$rps n=$n payd_ms/req=$(echo "scale=4; ($p1-$p0)*1000/$HZ/$n" | bc) pg_ms/req=$(echo "scale=4; ($g1-$g0)*1000/$HZ/$n" | bc) total_ms/req=$(echo "scale=4; ($tot1-$tot0)*1000/$HZ/$n" | bc) machine_busy=$(echo "scale=2; ($tot1-$tot0)/$HZ/8/2" | bc)" | tee -a "$OUT"
done
curl -sf "$BASE/metrics" | grep -E 'statement_read|balance_read|ledger_batch_size_(sum|count)' | tee -a "$OUT"
stop
psql -h 127.0.0.1 -U postgres -XAtqc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
rm -f "$cards" target/mix-split-wrk.out
echo "results in $OUT"
