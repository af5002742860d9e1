-- Statement pages (cards and merchants) with an upper bound (`to`): `payd_statement_page`, found at
-- 1,000,000 operations (docs/benchmarks.md, "Reads at 1,000,000 operations, fourth round").
-- payd calls it only for a window with `to`; the page without `to` stays a plain prepared statement
-- (a PL/pgSQL call measured 25-40 % slower than that statement for the common page).
-- * Its queries run on generic plans (`SET plan_cache_mode = force_generic_plan`, saved and restored
--   per call) without parallel workers (`max_parallel_workers_per_gather = 0`: the generic plans'
--   row estimates chose a Gather Merge with two workers, 15-30 ms to start them for 21 rows); those
--   are the plans benches/explain-1m.sh checks, bounded by the page.
-- * A window with an upper bound (`to`) walks the new `postings_account_created_idx`
--   backwards from `to` (or from the cursor's posting, whichever is older), instead of walking
--   `postings (account_id, id)` from the newest posting and filtering `created_at` down to the window
--   (257,610 rows for a day three days back on a card with 500,000 postings). Such a page is ordered by
--   `(created_at, id)` descending; within an account that is the id order whenever postings are
--   written by one ledger writer (each batch's postings share its transaction's time).
--   The index is on `created_at - 'epoch'` (an interval, same order), not `created_at`: on the plain
--   column, the statement page without `to` (a prepared statement whose `created_at` bounds then
--   became index conditions) took it in its generic plan and sorted the account's every posting
--   (4.5 s for 500,000 postings). Only this function's query uses the expression.
--
-- The index costs one more btree entry per posting written. Production: diesel runs a migration in
-- one transaction, where CREATE INDEX CONCURRENTLY is refused, and a plain CREATE INDEX blocks writes
-- to `postings` while it builds. On a large table, build it beforehand with
--   CREATE INDEX CONCURRENTLY postings_account_created_idx
--     ON postings (account_id, (created_at - 'epoch'::timestamptz), id);
-- then this migration finds it (IF NOT EXISTS) and only creates the function.
CREATE INDEX IF NOT EXISTS postings_account_created_idx
  ON postings (account_id, (created_at - 'epoch'::timestamptz), id);

CREATE FUNCTION payd_statement_page(
  p_account bigint, p_cursor bigint, p_from timestamptz, p_to timestamptz, p_limit bigint
) RETURNS TABLE (
  posting_id bigint, operation_id uuid, kind text, amount bigint, balance_after bigint, created_at timestamptz
) LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan SET max_parallel_workers_per_gather = 0 AS $$
DECLARE
  b_at timestamptz;
  b_id bigint := 9223372036854775807;
  c_at timestamptz;
BEGIN
  IF p_to IS NOT NULL THEN
    b_at := p_to;
    IF p_cursor < 9223372036854775807 THEN
      SELECT p.created_at INTO c_at FROM postings p WHERE p.id = p_cursor AND p.account_id = p_account;
      IF c_at IS NOT NULL AND c_at <= p_to THEN
        b_at := c_at;
        b_id := p_cursor;
      END IF;
    END IF;
    IF p_cursor = 9223372036854775807 OR c_at IS NOT NULL THEN
      RETURN QUERY SELECT p.id, p.operation_id, o.kind, p.amount, p.balance_after, p.created_at
        FROM postings p JOIN operations o ON o.id = p.operation_id
        WHERE p.account_id = p_account
          AND (p.created_at - 'epoch'::timestamptz, p.id) < (b_at - 'epoch'::timestamptz, b_id)
          AND p.created_at - 'epoch'::timestamptz
            >= coalesce(p_from, '0001-01-01 00:00:00+00'::timestamptz) - 'epoch'::timestamptz
        ORDER BY p.created_at - 'epoch'::timestamptz DESC, p.id DESC LIMIT p_limit;
      RETURN;
    END IF;
  END IF;
  -- No upper bound (or a cursor that is not one of the account's postings): the newest postings
  -- below the cursor, `postings (account_id, id)` walked backwards.
  RETURN QUERY SELECT p.id, p.operation_id, o.kind, p.amount, p.balance_after, p.created_at
    FROM postings p JOIN operations o ON o.id = p.operation_id
    WHERE (p.account_id, p.id) < (p_account, p_cursor) AND (p.account_id, p.id) > (p_account, 0)
      AND (p_from IS NULL OR p.created_at >= p_from) AND (p_to IS NULL OR p.created_at <= p_to)
    ORDER BY p.account_id DESC, p.id DESC LIMIT p_limit;
END $$;
