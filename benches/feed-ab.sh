#!/usr/bin/env bash
# The account change feed, A/B (docs/benchmarks.md, "The account change feed"): the read mix and the
# 10:1 mix of benches/reads.sh (wrk + benches/mixed.lua over 2,000 cards) with `ledger.change_feed`
# off and on, alternating, one payd each on a fresh database; after each run, how its balance reads
# were answered (`payd_operations_total{kind="balance_read"}`: memory or reloaded). Then the write
# cost of the `accounts` trigger: transfers (payd-load, uniform over 2,000 cards, 128 connections) on
# one database with the trigger, without it (dropped), and with it again. Ledger only, release build,
# one payd.
#
#   cargo build --release --bins && benches/feed-ab.sh        # results in target/feed-ab.txt
#
# Env: ROUNDS (2), WRK_SECS (8s), CONNS (32), CARDS_N (2000). Needs wrk. Not part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18097}
OUT=${OUT:-target/feed-ab.txt}
WRK_SECS=${WRK_SECS:-8s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-32}
CARDS_N=${CARDS_N:-2000}
LOG_PREFIX=feed-ab
. benches/lib.sh
command -v wrk >/dev/null || { echo "feed-ab: wrk is not installed (make setup-test)" >&2; exit 1; }
mkdir -p target
reads() {
  curl -sf "$BASE/metrics" | grep 'kind="balance_read"' | sed -E 's/.*outcome="([a-z]+)".* ([0-9.e+]+)$/\1=\2/' | tr '\n' ' '
}
stamp=$(date +%s)
for r in $(seq 1 "$ROUNDS"); do
  for feed in false true; do
    db=payd_feed_ab_${stamp}_${r}_$feed
    PAYD_LEDGER__CHANGE_FEED=$feed serve "$db"
    cards=target/feed-ab-cards-$db.txt
    load "$db setup" --scenario uniform --cards "$CARDS_N" --cards-file "$cards" --requests 1 >/dev/null
    TOKEN=$(curl -sf "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
      -d '{"email":"admin@payd.local","password":"admin-pass-123"}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
    # Some history on every card, and every account actor loaded.
    wrk -t2 -c"$CONNS" -d4s -s benches/mixed.lua "$BASE" -- "$TOKEN" "$cards" mixed "$(date +%s%N)" >/dev/null 2>&1
    for mode in reads mixed; do
      before=$(reads)
      echo "== $(date +%T) round $r change_feed=$feed $mode mix, $CONNS connections (load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT"
      wrk -t2 -c"$CONNS" -d"$WRK_SECS" --latency -s benches/mixed.lua "$BASE" -- "$TOKEN" "$cards" "$mode" "$(date +%s%N)" 2>&1 \
        | grep -E 'Requests/sec|Latency |99%|Non-2xx' | sed "s/^/[feed=$feed $mode] /" | tee -a "$OUT"
      echo "[feed=$feed $mode] balance reads before: $before after: $(reads)" | tee -a "$OUT"
    done
    stop
    psql -h 127.0.0.1 -U postgres -XAtqc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -f "$cards"
  done
done
db=payd_feed_ab_${stamp}_writes
serve "$db"
cards=target/feed-ab-cards-$db.txt
load "$db setup" --scenario uniform --cards "$CARDS_N" --cards-file "$cards" --requests 1 >/dev/null
for arm in with without with; do
  if [ "$arm" = without ]; then
    psql -h 127.0.0.1 -U postgres -d "$db" -XAtqc "DROP TRIGGER accounts_changed ON accounts"
  else
    psql -h 127.0.0.1 -U postgres -d "$db" -XAtqc "DROP TRIGGER IF EXISTS accounts_changed ON accounts;
      CREATE TRIGGER accounts_changed AFTER UPDATE ON accounts REFERENCING OLD TABLE AS accounts_old
      NEW TABLE AS accounts_new FOR EACH STATEMENT EXECUTE FUNCTION payd_accounts_changed()"
  fi
  load "transfers, trigger $arm" --scenario uniform --cards "$CARDS_N" --cards-file "$cards" --duration "$WRK_SECS" \
    --connections 128 --warmup 2s
done
stop
psql -h 127.0.0.1 -U postgres -XAtqc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
rm -f "$cards"
echo "results in $OUT"
