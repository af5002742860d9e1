-- Card data and abuse (issue 10).
-- 1. Stored request fingerprints were plain SHA-256 hashes of whole request bodies, card number, expiry
--    and CVV included: brute-forceable back into card data. They are destroyed; the stored answers stay
--    (a retry is still replayed, never executed twice) until purged by `idempotency.ttl_hours`.
UPDATE idempotency_keys SET request_hash = 'legacy' WHERE position(':' in request_hash) = 0;
-- The retention job purges stored answers by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
-- 2. A card locked for payments after too many wrong expiry dates or CVVs (its holder unlocks it).
ALTER TABLE cards ADD COLUMN payments_locked_at TIMESTAMPTZ;
