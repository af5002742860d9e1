#!/usr/bin/env bash
# The plans of the read paths' queries on a database (docs/benchmarks.md, "Reads"), as payd runs them:
# generic plans (what a prepared statement settles on), nested statements of payd_operation_page
# shown by auto_explain, with their actual times.
#
#   benches/reads-explain.sh payd_reads_hist_…     # e.g. after benches/reads.sh, history loaded
#
# Uses the card with the most operations and its holder. Needs psql and superuser (LOAD auto_explain).
set -euo pipefail
DB=${1:?usage: benches/reads-explain.sh DATABASE}
URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}/$DB
read -r CARD ACCOUNT USER_ID < <(psql "$URL" -XAtF' ' -c "
  SELECT c.id, c.account_id, c.user_id FROM cards c
  ORDER BY (SELECT count(*) FROM postings p WHERE p.account_id = c.account_id) DESC, c.id LIMIT 1")
echo "card $CARD (account $ACCOUNT, holder $USER_ID); $(psql "$URL" -XAtc 'SELECT count(*) FROM operations') operations"
psql "$URL" -X -v ON_ERROR_STOP=1 2>&1 <<SQL | grep -vE '^(LOAD|SET|PREPARE|DEALLOCATE)$'
SET plan_cache_mode = force_generic_plan;
\echo '== statement page (20 lines), generic plan'
PREPARE st(bigint, bigint, timestamptz, timestamptz, bigint) AS
  SELECT p.id, p.operation_id, o.kind, p.amount, p.balance_after, p.created_at
  FROM postings p JOIN operations o ON o.id = p.operation_id
  WHERE (p.account_id, p.id) < (\$1, \$2) AND (p.account_id, p.id) > (\$1, 0)
    AND p.created_at >= \$3 AND p.created_at <= \$4
  ORDER BY p.account_id DESC, p.id DESC LIMIT \$5;
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE st($ACCOUNT, 9223372036854775807, 'epoch', '9999-12-31', 21);
\echo '== balance at a point in time, generic plan'
PREPARE bat(bigint, timestamptz) AS
  SELECT balance_after FROM postings
  WHERE (account_id, id) < (\$1, 9223372036854775807) AND (account_id, id) > (\$1, 0) AND created_at <= \$2
  ORDER BY account_id DESC, id DESC LIMIT 1;
EXPLAIN (ANALYZE, COSTS OFF) EXECUTE bat($ACCOUNT, now());
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET client_min_messages = log;
\echo '== transfers of the card (admin, card_id): payd_operation_page'
SELECT count(*) FROM payd_operation_page('transfer', NULL, $CARD, NULL, NULL, NULL, NULL, NULL, 0::smallint, 9223372036854775807, 21, NULL);
\echo '== transfers of the holder (no filter, not an admin)'
SELECT count(*) FROM payd_operation_page('transfer', $USER_ID, NULL, NULL, NULL, NULL, NULL, NULL, 0::smallint, 9223372036854775807, 21, NULL);
\echo '== transfers from the card (from_card_id, not an admin)'
SELECT count(*) FROM payd_operation_page('transfer', $USER_ID, NULL, $CARD, NULL, NULL, NULL, NULL, 0::smallint, 9223372036854775807, 21, NULL);
\echo '== every transfer (admin, no filter)'
SELECT count(*) FROM payd_operation_page('transfer', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0::smallint, 9223372036854775807, 21, NULL);
\echo '== search (admin, a reference that matches nothing): the search branch on operations_search_trgm'
SELECT count(*) FROM payd_operation_page('transfer', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0::smallint, 9223372036854775807, 21, '%no-such-reference-xyz%');
\echo '== search within the card (card_id)'
SELECT count(*) FROM payd_operation_page('transfer', NULL, $CARD, NULL, NULL, NULL, NULL, NULL, 0::smallint, 9223372036854775807, 21, '%no-such-reference-xyz%');
SET client_min_messages = notice;
\echo '== payments search (admin, GET /payments?search=), as sent by diesel'
EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM operations WHERE kind = ANY ('{payment,refund}') AND archived_at IS NULL
  AND (coalesce(operations.order_ref, '') || ' ' || coalesce(operations.method, '')) ILIKE '%no-such-reference-xyz%'
  ORDER BY seq DESC LIMIT 21;
\echo '== cards search (admin, GET /cards?search=)'
EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM cards WHERE archived_at IS NULL
  AND (cards.label || ' ' || cards.pan_last4) ILIKE '%no-such-label-xyz%' ORDER BY id DESC LIMIT 21;
SQL
