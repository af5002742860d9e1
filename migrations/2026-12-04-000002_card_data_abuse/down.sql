ALTER TABLE cards DROP COLUMN payments_locked_at;
DROP INDEX idempotency_keys_created_at;
-- The destroyed fingerprints cannot come back: legacy rows keep replaying their stored answers.
