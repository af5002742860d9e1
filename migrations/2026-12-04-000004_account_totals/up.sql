-- Withdrawal totals become maintained state: the ledger writer raises them in the same row update as
-- the balance (same version), so a balance read is answered from the account actor and no longer sums
-- a card's whole history. `payd verify` recomputes them from the operations.
ALTER TABLE accounts ADD COLUMN total_withdrawn bigint NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN last_withdrawal_at timestamptz;

UPDATE accounts a SET total_withdrawn = t.total, last_withdrawal_at = t.last
FROM (
  SELECT c.account_id,
    COALESCE((SELECT sum(o.amount) FROM operations o
              WHERE o.kind = 'withdrawal' AND o.status = 'success' AND o.source_card_id = c.id), 0)
    - COALESCE((SELECT sum(r.amount) FROM operations r JOIN operations w ON w.id = r.reverses_id
              WHERE w.kind = 'withdrawal' AND w.source_card_id = c.id AND r.status = 'success'), 0) AS total,
    (SELECT max(o.created_at) FROM operations o
     WHERE o.kind = 'withdrawal' AND o.status = 'success' AND o.source_card_id = c.id) AS last
  FROM cards c
) t
WHERE a.id = t.account_id AND (t.total <> 0 OR t.last IS NOT NULL);

