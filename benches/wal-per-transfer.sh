#!/usr/bin/env bash
# What one transfer costs PostgreSQL, by configuration: WAL bytes per transfer (`pg_current_wal_lsn()`
# before and after N transfers, the relay, notifier and e-mail sender included: the run ends when the
# outbox is published and no e-mail is pending) and rows added per transfer, table by table
# (counted before and after). Build-independent (the debug build measures the same bytes).
# WAL is cluster-wide: run it while nothing else writes to the server (the load line shows `uptime`).
#
#   cargo build --bins && benches/wal-per-transfer.sh              # results in target/wal-per-transfer.txt
#   N=5000 BIN=target/release benches/wal-per-transfer.sh
#
# Variants: ledger-only (relay and consumers off); default with every transfer e-mailed
# (`notifications.transfer_min_amount = 0`, what every transfer cost before notification
# preferences); default (transfers e-mailed from IDR 1,000,000.00; payd-load moves IDR 500.00).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/debug}
PORT=${BENCH_PORT:-18090}
N=${N:-2000}
OUT=${OUT:-target/wal-per-transfer.txt}
LOG_PREFIX=wal
# shellcheck source=benches/lib.sh
source benches/lib.sh
mkdir -p target

psqlq() { psql "postgres://postgres@127.0.0.1:5432/$DB" -XAtc "$1"; }
drained() {
  [ "$PAYD_EVENTS__RELAY_ENABLED" = true ] || return 0
  for _ in $(seq 1 240); do
    [ "$(psqlq "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL) + (SELECT count(*) FROM email_jobs WHERE status = 'pending')")" = 0 ] && return 0
    sleep 0.5
  done
  echo "not drained after 120 s" >&2
  return 1
}
TABLES="operations postings idempotency_keys outbox processed_events email_jobs mailbox webhook_deliveries"
# Rows per table, counted (exact; the statistics collector may lag behind a busy backend).
inserts() { for t in $TABLES; do printf '%s=%s ' "$t" "$(psqlq "SELECT count(*) FROM $t")"; done; }

# variant NAME VAR=value…
variant() {
  local name=$1; shift
  DB=payd_wal_${name//-/_}_$(date +%s)
  export "$@"
  serve "$DB"
  "$BIN/payd-load" --base-url "$BASE" --no-verify --cards 200 --cards-file "target/wal-cards-$DB.txt" --requests 1 >/dev/null
  drained; sleep 3
  local lsn0 rows0 lsn1 rows1
  lsn0=$(psqlq "SELECT pg_current_wal_lsn()"); rows0=$(inserts)
  echo "== $(date +%T) $name: $* N=$N (load average $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT"
  "$BIN/payd-load" --base-url "$BASE" --no-verify --cards 200 --cards-file "target/wal-cards-$DB.txt" \
    --requests "$N" --connections 64 | grep -E '^(throughput|by status)' | sed "s/^/[$name] /" | tee -a "$OUT"
  drained; sleep 3
  lsn1=$(psqlq "SELECT pg_current_wal_lsn()"); rows1=$(inserts)
  psqlq "SELECT '[$name] WAL bytes per transfer: ' || round(pg_wal_lsn_diff('$lsn1', '$lsn0') / $N)" | tee -a "$OUT"
  python3 - "$name" "$N" "$rows0" "$rows1" <<'PY' | tee -a "$OUT"
import sys
name, n, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
parse = lambda s: dict((kv.split('=')[0], int(kv.split('=')[1])) for kv in s.split())
a, b = parse(a), parse(b)
d = {t: b[t] - a.get(t, 0) for t in b if b[t] - a.get(t, 0) > 0}
print(f"[{name}] rows added per transfer: {sum(d.values()) / n:.2f} (" + ", ".join(f"{t} {v / n:.2f}" for t, v in sorted(d.items())) + ")")
PY
  stop
  psql postgres://postgres@127.0.0.1:5432/postgres -Xqc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  unset "${@%%=*}"
}

variant ledger-only PAYD_EVENTS__RELAY_ENABLED=false PAYD_EVENTS__CONSUMERS_ENABLED=false
variant default-mail-every-transfer PAYD_EVENTS__RELAY_ENABLED=true PAYD_EVENTS__CONSUMERS_ENABLED=true \
  PAYD_NOTIFICATIONS__TRANSFER_MIN_AMOUNT=0
variant default PAYD_EVENTS__RELAY_ENABLED=true PAYD_EVENTS__CONSUMERS_ENABLED=true
echo "results in $OUT"
