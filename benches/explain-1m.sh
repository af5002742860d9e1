#!/usr/bin/env bash
# Reads at 1,000,000 operations (docs/benchmarks.md): builds a database holding 1,000,000 operations,
# ANALYZEs it, and EXPLAINs (ANALYZE, BUFFERS) every read path's query with real parameters — the
# statement pages of a card and a merchant (first and a deep page, with and without a window), the
# `?at=` balance, the operation lists (`payd_operation_page`: per card, per side, per holder, every
# operation, filters, search), the payments lists (admin, merchant, customer, card) and the card lists
# — under both the generic plans (what a prepared statement settles on) and the custom ones.
# Exits non-zero when a plan reads `operations` or `postings` sequentially, or when a plan node
# yields, or filters away, more than BOUND rows (a sort over an unbounded set, or an index walk that
# the page size does not stop).
#
#   cargo build --release --bins && benches/explain-1m.sh      # plans in target/explain-1m.txt
#   benches/explain-1m.sh payd_explain_1m                       # again on the database built before
#
# The database: payd-load's setup (CARDS_N cards over USERS holders, funded, a few thousand real
# transfers and payments), then HISTORY/2 payments into the run's merchant and HISTORY/2 transfers
# (payd-load --history). The transfers' receiving side is then moved onto one card (the "hot" card:
# its account and `dest_card_id`) and the payments' onto the merchant's account, so one card and one
# merchant each hold half a million postings next to cards holding a few (a skew like a settlement
# account's). That move leaves the accounts' balances behind their postings: a database for plans,
# not for `payd verify`. Needs psql and superuser (LOAD auto_explain); about 3 minutes to build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release}
PORT=${BENCH_PORT:-18097}
OUT=${OUT:-target/explain-1m.txt}
HISTORY=${HISTORY:-1000000}
CARDS_N=${CARDS_N:-200}
USERS=${USERS:-50}
BOUND=${BOUND:-5000}
# Cases over the bound that are known and reported, not failed: none since the fourth round
# (docs/benchmarks.md); KNOWN='regex of == names' reports matching cases instead of failing on them.
KNOWN=${KNOWN-}
LOG_PREFIX=explain
. benches/lib.sh
DB=${1:-payd_explain_$(date +%s)}
URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}/$DB
mkdir -p target
: >"$OUT"
q() { psql "$URL" -XAt -v ON_ERROR_STOP=1 -c "$1"; }

if ! psql "$URL" -XAtc 'SELECT 1' >/dev/null 2>&1 || [ "$(q 'SELECT count(*) FROM operations')" -lt "$HISTORY" ]; then
  serve "$DB"
  cards=target/explain-cards-$DB.txt
  load "setup" --scenario uniform --cards "$CARDS_N" --users "$USERS" --cards-file "$cards" --requests 3000 --connections 16
  load "payments" --scenario merchant --cards 20 --requests 1000 --connections 8 --history $((HISTORY / 2)) --database-url "$URL"
  load "transfers" --scenario uniform --cards 2 --requests 1 --history $((HISTORY - HISTORY / 2)) --database-url "$URL"
  stop
  HOT=$(head -n1 "$cards")
  psql "$URL" -Xq -v ON_ERROR_STOP=1 <<SQL
BEGIN;
-- The transfer history's receiving account (the newest history-dst- account with transfers) → the hot card.
CREATE TEMP TABLE mv AS SELECT (SELECT a.id FROM accounts a WHERE a.code LIKE 'history-dst-%'
    AND EXISTS (SELECT 1 FROM operations o WHERE o.credit_account_id = a.id AND o.kind = 'transfer') LIMIT 1) AS t_dst,
  (SELECT a.id FROM accounts a WHERE a.code LIKE 'history-dst-%'
    AND EXISTS (SELECT 1 FROM operations o WHERE o.credit_account_id = a.id AND o.kind = 'payment') LIMIT 1) AS p_dst,
  (SELECT account_id FROM cards WHERE id = $HOT) AS card_acc,
  (SELECT account_id FROM merchants ORDER BY id DESC LIMIT 1) AS m_acc;
UPDATE operations o SET dest_card_id = $HOT, credit_account_id = mv.card_acc FROM mv WHERE o.credit_account_id = mv.t_dst;
UPDATE postings p SET account_id = mv.card_acc FROM mv WHERE p.account_id = mv.t_dst;
UPDATE operations o SET credit_account_id = mv.m_acc FROM mv WHERE o.credit_account_id = mv.p_dst;
UPDATE postings p SET account_id = mv.m_acc FROM mv WHERE p.account_id = mv.p_dst;
COMMIT;
VACUUM ANALYZE;
SQL
fi

# The parameters: the hot card, a card with a few postings, their holders, the merchant.
read -r HOT HOT_ACC HOT_USER < <(q "SELECT c.id, c.account_id, c.user_id FROM cards c
  ORDER BY (SELECT count(*) FROM postings p WHERE p.account_id = c.account_id) DESC, c.id LIMIT 1" | tr '|' ' ')
read -r COLD COLD_ACC COLD_USER < <(q "SELECT c.id, c.account_id, c.user_id FROM cards c JOIN users u ON u.id = c.user_id
  WHERE c.user_id <> $HOT_USER AND NOT u.email LIKE 'admin@%' ORDER BY c.id DESC LIMIT 1" | tr '|' ' ')
COLD_CARDS=$(q "SELECT '{' || string_agg(id::text, ',') || '}' FROM cards WHERE user_id = $COLD_USER")
read -r MERCHANT M_ACC < <(q "SELECT id, account_id FROM merchants ORDER BY id DESC LIMIT 1" | tr '|' ' ')
# A deep page: the cursor half-way down the hot card's postings (and its operations by seq).
DEEP=$(q "SELECT id FROM postings WHERE account_id = $HOT_ACC ORDER BY id DESC OFFSET (SELECT count(*) / 2 FROM postings WHERE account_id = $HOT_ACC) LIMIT 1")
DEEP_SEQ=$(q "SELECT seq FROM operations WHERE dest_card_id = $HOT ORDER BY seq DESC OFFSET (SELECT count(*) / 2 FROM operations WHERE dest_card_id = $HOT) LIMIT 1")
M_DEEP=$(q "SELECT id FROM postings WHERE account_id = $M_ACC ORDER BY id DESC OFFSET (SELECT count(*) / 2 FROM postings WHERE account_id = $M_ACC) LIMIT 1")
M_DEEP_SEQ=$(q "SELECT seq FROM operations WHERE merchant_id = $MERCHANT ORDER BY seq DESC OFFSET (SELECT count(*) / 2 FROM operations WHERE merchant_id = $MERCHANT) LIMIT 1")
{
  echo "== $(date -u +%FT%TZ) database $DB: $(q 'SELECT count(*) FROM operations') operations, $(q 'SELECT count(*) FROM postings') postings"
  echo "hot card $HOT (account $HOT_ACC, $(q "SELECT count(*) FROM postings WHERE account_id = $HOT_ACC") postings, holder $HOT_USER);" \
    "card $COLD (account $COLD_ACC, $(q "SELECT count(*) FROM postings WHERE account_id = $COLD_ACC") postings, holder $COLD_USER);" \
    "merchant $MERCHANT (account $M_ACC, $(q "SELECT count(*) FROM postings WHERE account_id = $M_ACC") postings)"
} | tee -a "$OUT"

MAX=9223372036854775807
# op NAME KIND USER CARD FROM_CARD TO_CARD STATUS FROM TO ARCHIVED CURSOR SEARCH: payd_operation_page as
# payd sends it (limit 21); its nested statements' plans come from auto_explain.
op() {
  echo "\\echo '== list: $1'"
  echo "SELECT count(*) FROM payd_operation_page('$2', $3, $4, $5, $6, $7, $8, $9, ${10}::smallint, ${11}, 21, ${12});"
}
# stmt NAME ACCOUNT CURSOR FROM: the statement page without `to` (cards and merchants), as diesel sends it
# (the open upper bound 9999-12-31).
stmt() {
  echo "\\echo '== statement: $1'"
  echo "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE st($2, $3, $2, '$4', '9999-12-31', 21);"
}
# stmtw NAME ACCOUNT CURSOR FROM TO: the statement page with `to`, `payd_statement_page` as payd sends
# it (limit 21); its inner statements' plans (generic: the function sets plan_cache_mode) come from
# auto_explain.
stmtw() {
  echo "\\echo '== statement: $1'"
  echo "SELECT count(*) FROM payd_statement_page($2, $3, $4, $5, 21);"
}
# pay NAME SQL-FILTER: the payments list (GET /payments, /merchants/{id}/payments), as diesel builds it:
# one query per kind (payment, refund), merged by payd. Plain statements here: their custom plans.
pay() {
  local kind
  for kind in payment refund; do
    echo "\\echo '== payments ($kind): $1'"
    echo "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM operations WHERE operations.kind = '$kind' $2
    AND operations.archived_at IS NULL ORDER BY operations.seq DESC LIMIT 21;"
  done
}
suite() {
  cat <<SQL
PREPARE st(bigint, bigint, bigint, timestamptz, timestamptz, bigint) AS
  SELECT postings.id, postings.operation_id, operations.kind, postings.amount, postings.balance_after, postings.created_at
  FROM (postings INNER JOIN operations ON (postings.operation_id = operations.id))
  WHERE (((postings.account_id, postings.id) < (\$1, \$2) AND (postings.account_id, postings.id) > (\$3, 0))
    AND (postings.created_at >= \$4)) AND (postings.created_at <= \$5)
  ORDER BY postings.account_id DESC, postings.id DESC LIMIT \$6;
PREPARE bat(bigint, bigint, bigint, timestamptz) AS
  SELECT postings.balance_after FROM postings
  WHERE (postings.account_id, postings.id) < (\$1, \$2) AND (postings.account_id, postings.id) > (\$3, 0)
    AND postings.created_at <= \$4
  ORDER BY postings.account_id DESC, postings.id DESC LIMIT 1;
PREPARE cards_of(bigint, bigint, text[], boolean[]) AS
  SELECT * FROM cards WHERE cards.id < \$2 AND cards.status = ANY(\$3) AND (cards.archived_at IS NOT NULL) = ANY(\$4)
    AND cards.user_id = \$1 ORDER BY cards.id DESC LIMIT 21;
PREPARE cards_all(bigint, text[], boolean[]) AS
  SELECT * FROM cards WHERE cards.id < \$1 AND cards.status = ANY(\$2) AND (cards.archived_at IS NOT NULL) = ANY(\$3)
    ORDER BY cards.id DESC LIMIT 21;
SQL
  stmt "hot card, first page" "$HOT_ACC" $MAX epoch
  stmt "hot card, deep page" "$HOT_ACC" "$DEEP" epoch
  stmt "hot card, last hour" "$HOT_ACC" $MAX "$(date -u -d '-1 hour' +%FT%TZ)"
  stmt "card with few postings, first page" "$COLD_ACC" $MAX epoch
  stmt "merchant, first page" "$M_ACC" $MAX epoch
  stmt "merchant, deep page" "$M_ACC" "$M_DEEP" epoch
  echo "\\echo '== balance ?at=: hot card, now'"
  echo "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE bat($HOT_ACC, $MAX, $HOT_ACC, now());"
  echo "\\echo '== balance ?at=: card with few postings, now'"
  echo "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE bat($COLD_ACC, $MAX, $COLD_ACC, now());"
  echo "\\echo '== cards: a holder''s'"
  echo "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE cards_of($COLD_USER, $MAX, '{active,frozen,closed}', '{f}');"
  echo "\\echo '== cards: every card (admin)'"
  echo "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE cards_all($MAX, '{active,frozen,closed}', '{f}');"
  echo "\\echo '== cards: search (admin)'"
  echo "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM cards WHERE cards.id < $MAX AND (cards.label || ' ' || cards.pan_last4) ILIKE '%no-such-label-xyz%' ORDER BY cards.id DESC LIMIT 21;"
  pay "admin, every payment" ""
  pay "admin, a later page" "AND operations.seq < $M_DEEP_SEQ"
  pay "merchant (owner or API key)" "AND operations.merchant_id = $MERCHANT AND (operations.status = 'success' OR operations.failure_reason IS NULL OR operations.failure_reason <> ALL('{card_declined}'))"
  pay "customer (holder of a few cards)" "AND (operations.source_card_id = ANY('$COLD_CARDS') OR operations.dest_card_id = ANY('$COLD_CARDS'))"
  pay "admin, card_id" "AND (operations.source_card_id = $COLD OR operations.dest_card_id = $COLD)"
  pay "admin, search" "AND (operations.order_ref IS NOT NULL OR operations.method IS NOT NULL) AND (coalesce(operations.order_ref, '') || ' ' || coalesce(operations.method, '')) ILIKE '%no-such-reference-xyz%'"
  cat <<SQL
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET client_min_messages = log;
SQL
  stmtw "hot card, a day three days back" "$HOT_ACC" $MAX "'$(date -u -d '-4 days' +%FT%TZ)'" "'$(date -u -d '-3 days' +%FT%TZ)'"
  stmtw "hot card, up to three days back" "$HOT_ACC" $MAX NULL "'$(date -u -d '-3 days' +%FT%TZ)'"
  stmtw "hot card, a day three days back, next page" "$HOT_ACC" "$(q "SELECT id FROM postings WHERE account_id = $HOT_ACC AND created_at <= '$(date -u -d '-3 days' +%FT%TZ)' ORDER BY created_at DESC, id DESC OFFSET 20 LIMIT 1")" "'$(date -u -d '-4 days' +%FT%TZ)'" "'$(date -u -d '-3 days' +%FT%TZ)'"
  stmtw "hot card, up to now" "$HOT_ACC" $MAX NULL "now()"
  stmtw "card with few postings, up to now" "$COLD_ACC" $MAX NULL "now()"
  #  name                                 kind        user        card   from    to     status     from to   arch cursor     search
  op "transfers of the hot card (card_id)" transfer   NULL        "$HOT" NULL    NULL   NULL       NULL NULL 0 $MAX        NULL
  op "transfers of the hot card, deep page" transfer  NULL        "$HOT" NULL    NULL   NULL       NULL NULL 0 "$DEEP_SEQ" NULL
  op "transfers to the hot card (to_card_id)" transfer NULL       NULL   NULL    "$HOT" NULL       NULL NULL 0 $MAX        NULL
  op "transfers from a card (from_card_id)" transfer  NULL        NULL   "$COLD" NULL   NULL       NULL NULL 0 $MAX        NULL
  op "transfers of a card with few (card_id)" transfer NULL       "$COLD" NULL   NULL   NULL       NULL NULL 0 $MAX        NULL
  op "transfers of the hot-card holder" transfer    "$HOT_USER" NULL   NULL    NULL   NULL       NULL NULL 0 $MAX        NULL
  op "transfers of a holder of a few cards" transfer  "$COLD_USER" NULL  NULL    NULL   NULL       NULL NULL 0 $MAX        NULL
  op "every transfer (admin)" transfer                NULL        NULL   NULL    NULL   NULL       NULL NULL 0 $MAX        NULL
  op "every transfer, deep page (admin)" transfer     NULL        NULL   NULL    NULL   NULL       NULL NULL 0 "$DEEP_SEQ" NULL
  op "every top-up (admin)" topup                     NULL        NULL   NULL    NULL   NULL       NULL NULL 0 $MAX        NULL
  op "every withdrawal (admin)" withdrawal            NULL        NULL   NULL    NULL   NULL       NULL NULL 0 $MAX        NULL
  op "every reversal (admin)" reversal                NULL        NULL   NULL    NULL   NULL       NULL NULL 0 $MAX        NULL
  op "failed transfers (admin, status)" transfer      NULL        NULL   NULL    NULL   "'failed'" NULL NULL 0 $MAX        NULL
  op "archived transfers (admin)" transfer            NULL        NULL   NULL    NULL   NULL       NULL NULL 1 $MAX        NULL
  op "transfers of the last hour (admin, from)" transfer NULL     NULL   NULL    NULL   NULL "'$(date -u -d '-1 hour' +%FT%TZ)'" NULL 0 $MAX NULL
  op "search (admin)" transfer                        NULL        NULL   NULL    NULL   NULL       NULL NULL 0 $MAX "'%no-such-reference-xyz%'"
  op "search within the hot card" transfer            NULL        "$HOT" NULL    NULL   NULL       NULL NULL 0 $MAX "'%no-such-reference-xyz%'"
  op "search within the hot card, top-ups" topup      NULL        "$HOT" NULL    NULL   NULL       NULL NULL 0 $MAX "'%no-such-reference-xyz%'"
  op "search within a card with few" transfer         NULL        "$COLD" NULL   NULL   NULL       NULL NULL 0 $MAX "'%no-such-reference-xyz%'"
  echo "SET client_min_messages = notice;"
}

status=0
for mode in force_generic_plan force_custom_plan; do
  echo "==== plan_cache_mode = $mode" | tee -a "$OUT"
  { echo "SET plan_cache_mode = $mode;"; suite; } | psql "$URL" -X -v ON_ERROR_STOP=1 2>&1 \
    | grep -vE '^(LOAD|SET|PREPARE|DEALLOCATE)$' | tee -a "$OUT.$mode" >>"$OUT"
  # Over the bound: a sequential read of the big tables, or a node yielding / filtering away > BOUND rows.
  bad=$(awk -v bound="$BOUND" '
    /^== / { name = $0 }
    /Seq Scan on (operations|postings)/ { print name ": " $0; next }
    match($0, /actual time=[0-9.]+\.\.[0-9.]+ rows=[0-9]+/) {
      s = substr($0, RSTART, RLENGTH); sub(/.*rows=/, "", s); if (s + 0 > bound) print name ": " $0 }
    match($0, /Rows Removed by (Filter|Index Recheck): [0-9]+/) {
      s = substr($0, RSTART, RLENGTH); sub(/.*: /, "", s); if (s + 0 > bound) print name ": " $0 }
  ' "$OUT.$mode" | sed 's/  */ /g' | sort -u)
  rm -f "$OUT.$mode"
  if [ -n "$KNOWN" ] && [ -n "$bad" ]; then
    known=$(grep -E "$KNOWN" <<<"$bad" || true)
    bad=$(grep -vE "$KNOWN" <<<"$bad" || true)
    [ -n "$known" ] && { echo "== known, over the bound ($BOUND rows), $mode:"; echo "$known"; } | tee -a "$OUT"
  fi
  if [ -n "$bad" ]; then
    status=1
    { echo "== OVER THE BOUND ($BOUND rows), $mode:"; echo "$bad"; } | tee -a "$OUT"
  fi
done
echo "== summary: execution times" | tee -a "$OUT"
grep -E '^(==|.*Execution Time|.*duration: )' "$OUT" | grep -vE 'OVER THE BOUND|over the bound' | sed 's/^LOG:  //' | tee -a "$OUT.times" >/dev/null
mv "$OUT.times" "${OUT%.txt}-times.txt"
[ "$status" = 0 ] && echo "every plan within the bound ($BOUND rows), the known cases aside; plans in $OUT" || echo "plans over the bound; see $OUT"
exit "$status"
