ALTER TABLE accounts DROP COLUMN last_withdrawal_at;
ALTER TABLE accounts DROP COLUMN total_withdrawn;
