#!/usr/bin/env bash
# The write cost of the read indexes of issue 16 (docs/benchmarks.md, "Reads, fifth round"):
# `postings_account_created_idx` (migration 2026-12-08-000101, one btree entry per posting) and
# `operations_card_search` (2026-12-08-000102, GIN entries per operation with an order reference or a
# method). Ledger-only transfers (payd-load --scenario uniform: no method, no order reference) and
# merchant payments (an order reference: the GIN index takes them) on one database, rounds alternating with and without
# the two indexes (dropped and created again between runs), so the machine's other work is spread
# over both.
#
#   cargo build --release --bins && benches/index-cost.sh [ROUNDS]     # results in target/index-cost.txt
#
# Needs psql; about 1 minute a round. Not part of `make test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18096}
OUT=${OUT:-target/index-cost.txt}
SECS=${SECS:-10s}
ROUNDS=${1:-2}
LOG_PREFIX=index-cost
. benches/lib.sh
mkdir -p target
DB=payd_index_cost_$(date +%s)
URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}/$DB
CARDS=target/index-cost-cards-$DB.txt
serve "$DB"
load setup --scenario uniform --cards 2000 --cards-file "$CARDS" --requests 20000 --connections 32
q() { psql "$URL" -XAtq -v ON_ERROR_STOP=1 -c "$1" >/dev/null; }
with_indexes() {
  q "CREATE INDEX IF NOT EXISTS postings_account_created_idx
       ON postings (account_id, (created_at - 'epoch'::timestamptz), id)"
  q "CREATE INDEX IF NOT EXISTS operations_card_search ON operations USING gin (
       source_card_id, dest_card_id, (coalesce(order_ref, '') || ' ' || coalesce(method, '')) gin_trgm_ops
     ) WHERE order_ref IS NOT NULL OR method IS NOT NULL"
}
without_indexes() {
  q "DROP INDEX IF EXISTS postings_account_created_idx"
  q "DROP INDEX IF EXISTS operations_card_search"
}
for r in $(seq 1 "$ROUNDS"); do
  for side in with without; do
    "${side}_indexes"
    q "VACUUM ANALYZE operations"
    q "VACUUM ANALYZE postings"
    load "$side r$r transfers" --scenario uniform --cards 2000 --cards-file "$CARDS" --duration "$SECS" \
      --connections 128 --warmup 2s
    load "$side r$r payments" --scenario merchant --cards 1000 --duration "$SECS" --connections 128 --warmup 2s
  done
done
with_indexes
echo "results in $OUT"
