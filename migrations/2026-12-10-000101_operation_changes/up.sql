-- Operation changes that no account version shows, on the account change feed (`ledger::feed`):
-- a failed attempt is recorded without postings (its accounts' versions do not move), and archiving
-- or restoring an operation changes only the operation row. Each notifies `<account id>:*` on channel
-- `accounts_changed` for the operation's debit and credit accounts (the accounts of its source and
-- destination cards), so the first pages of operation lists kept in process (`payments::lists`) are
-- dropped on every instance. A successful operation needs nothing here: its postings raise both
-- accounts' versions in the same transaction, which the `accounts` trigger reports.
-- One notification per statement and per 150 accounts, like `payd_accounts_changed`.
-- Failed attempts (a successful operation is reported by the `accounts` trigger).
CREATE FUNCTION payd_operations_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  FOR payload IN
    SELECT string_agg(a.id::text || ':*', ',')
    FROM (
      SELECT u.id, (row_number() OVER ()) / 150 AS chunk
      FROM (
        SELECT DISTINCT x.id FROM operations_new o
        CROSS JOIN LATERAL (VALUES (o.debit_account_id), (o.credit_account_id)) AS x(id)
        WHERE o.status <> 'success'
      ) u
    ) a
    GROUP BY a.chunk
  LOOP
    PERFORM pg_notify('accounts_changed', payload);
  END LOOP;
  RETURN NULL;
END $$;

-- Updates that changed the row (in practice `archived_at`).
CREATE FUNCTION payd_operations_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  FOR payload IN
    SELECT string_agg(a.id::text || ':*', ',')
    FROM (
      SELECT u.id, (row_number() OVER ()) / 150 AS chunk
      FROM (
        SELECT DISTINCT x.id FROM operations_new n JOIN operations_old o ON o.id = n.id
        CROSS JOIN LATERAL (VALUES (n.debit_account_id), (n.credit_account_id),
                                   (o.debit_account_id), (o.credit_account_id)) AS x(id)
        WHERE n IS DISTINCT FROM o
      ) u
    ) a
    GROUP BY a.chunk
  LOOP
    PERFORM pg_notify('accounts_changed', payload);
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER operations_inserted AFTER INSERT ON operations
  REFERENCING NEW TABLE AS operations_new
  FOR EACH STATEMENT EXECUTE FUNCTION payd_operations_inserted();

CREATE TRIGGER operations_updated AFTER UPDATE ON operations
  REFERENCING OLD TABLE AS operations_old NEW TABLE AS operations_new
  FOR EACH STATEMENT EXECUTE FUNCTION payd_operations_updated();

CREATE FUNCTION payd_operations_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  payload text;
BEGIN
  FOR payload IN
    SELECT string_agg(a.id::text || ':*', ',')
    FROM (
      SELECT u.id, (row_number() OVER ()) / 150 AS chunk
      FROM (
        SELECT DISTINCT x.id FROM operations_gone o
        CROSS JOIN LATERAL (VALUES (o.debit_account_id), (o.credit_account_id)) AS x(id)
      ) u
    ) a
    GROUP BY a.chunk
  LOOP
    PERFORM pg_notify('accounts_changed', payload);
  END LOOP;
  RETURN NULL;
END $$;

CREATE TRIGGER operations_deleted AFTER DELETE ON operations
  REFERENCING OLD TABLE AS operations_gone
  FOR EACH STATEMENT EXECUTE FUNCTION payd_operations_deleted();
