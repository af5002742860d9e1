-- Card balances come from the figure rollup itself (src/stats/rollup.rs): a card's daily net flow is
-- the signed sum of its own `stats_daily` rows, the platform's the sum of the `balance` rows (one per
-- card side, role and day). The separate balance rollup and its postings join cost a second upsert
-- per card and round.
DROP TABLE stats_balance_daily;

-- The figure rows are updated in place every round (n and amount, no indexed column): leave room on
-- each page so those updates stay HOT (no new index entry, dead versions pruned within the page).
ALTER TABLE stats_daily SET (fillfactor = 70);

-- The platform's `balance` rows do not exist yet: count everything again from the first operation.
-- Rounds take `stats.max_batch` operations each, so this catches up within a few rounds.
DELETE FROM stats_daily;
DELETE FROM stats_gaps;
UPDATE stats_watermark SET upto = 0, updated_at = now();
