-- The account change feed (`ledger::feed`): every committed update of accounts notifies channel
-- `accounts_changed`, so each instance's account actors know, without reloading, whether another
-- instance changed their account. One notification per statement and per 150 accounts (the writer
-- updates a whole batch's accounts in one statement; 150 items stay under NOTIFY's 8,000-byte
-- payload limit at any id and version); items are `<id>:<version>` when the version
-- rose (a money movement) and `<id>:*` for a change the version does not show (floor, status, or a
-- balance written without raising the version). Updates that change none of what an account actor
-- holds (only `updated_at`) send nothing.
CREATE FUNCTION payd_accounts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  FOR payload IN
    SELECT string_agg(c.item, ',')
    FROM (
      SELECT n.id::text || ':' || CASE
               WHEN (n.min_balance, n.status) IS DISTINCT FROM (o.min_balance, o.status)
                 OR n.version <= o.version THEN '*'
               ELSE n.version::text
             END AS item,
             (row_number() OVER ()) / 150 AS chunk
      FROM accounts_new n JOIN accounts_old o ON o.id = n.id
      WHERE (n.balance, n.version, n.min_balance, n.status, n.total_withdrawn, n.last_withdrawal_at)
            IS DISTINCT FROM (o.balance, o.version, o.min_balance, o.status, o.total_withdrawn, o.last_withdrawal_at)
    ) c
    GROUP BY c.chunk
  LOOP
    PERFORM pg_notify('accounts_changed', payload);
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER accounts_changed AFTER UPDATE ON accounts
  REFERENCING OLD TABLE AS accounts_old NEW TABLE AS accounts_new
  FOR EACH STATEMENT EXECUTE FUNCTION payd_accounts_changed();

-- Deleted accounts (none are, in normal operation): an actor must reload (and find nothing).
CREATE FUNCTION payd_accounts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  FOR payload IN
    SELECT string_agg(d.id::text || ':*', ',') FROM (SELECT id, (row_number() OVER ()) / 150 AS chunk FROM accounts_gone) d
    GROUP BY d.chunk
  LOOP
    PERFORM pg_notify('accounts_changed', payload);
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts
  REFERENCING OLD TABLE AS accounts_gone
  FOR EACH STATEMENT EXECUTE FUNCTION payd_accounts_deleted();
