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


-- Profile caches (`/auth/me`) are invalidated by the database itself: any change to a user, a user's
-- roles or a role notifies channel `payd_users` (payload: the user id, or `*` for every user) when
-- the transaction commits, whichever code path made it.
CREATE FUNCTION payd_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'users' THEN
    PERFORM pg_notify('payd_users', COALESCE(NEW.id, OLD.id)::text);
  ELSIF TG_TABLE_NAME = 'user_roles' THEN
    PERFORM pg_notify('payd_users', COALESCE(NEW.user_id, OLD.user_id)::text);
  ELSE
    PERFORM pg_notify('payd_users', '*');
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER users_changed AFTER UPDATE OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION payd_user_changed();
CREATE TRIGGER user_roles_changed AFTER INSERT OR UPDATE OR DELETE ON user_roles
  FOR EACH ROW EXECUTE FUNCTION payd_user_changed();
CREATE TRIGGER roles_changed AFTER UPDATE OR DELETE ON roles
  FOR EACH ROW EXECUTE FUNCTION payd_user_changed();
