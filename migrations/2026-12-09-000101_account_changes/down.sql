DROP TRIGGER IF EXISTS accounts_deleted ON accounts;
DROP FUNCTION IF EXISTS payd_accounts_deleted();
DROP TRIGGER IF EXISTS accounts_changed ON accounts;
DROP FUNCTION IF EXISTS payd_accounts_changed();
