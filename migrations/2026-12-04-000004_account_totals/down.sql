DROP TRIGGER roles_changed ON roles;
DROP TRIGGER user_roles_changed ON user_roles;
DROP TRIGGER users_changed ON users;
DROP FUNCTION payd_user_changed();
ALTER TABLE accounts DROP COLUMN last_withdrawal_at;
ALTER TABLE accounts DROP COLUMN total_withdrawn;
