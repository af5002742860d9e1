-- A key that reached its limit of declined card-data attempts (the Redis counter of its window) is
-- blocked until the window ends; recorded here so that every instance's key cache refuses its payments
-- without asking Redis on the success path. A change of the block notifies `payd_api_keys` like the
-- key's other authentication state.
ALTER TABLE merchant_api_keys ADD COLUMN blocked_until TIMESTAMPTZ;
DROP TRIGGER merchant_api_keys_changed ON merchant_api_keys;
CREATE TRIGGER merchant_api_keys_changed AFTER UPDATE ON merchant_api_keys
  FOR EACH ROW
  WHEN (OLD.secret_hash IS DISTINCT FROM NEW.secret_hash OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.expires_at IS DISTINCT FROM NEW.expires_at OR OLD.merchant_id IS DISTINCT FROM NEW.merchant_id
        OR OLD.key_id IS DISTINCT FROM NEW.key_id OR OLD.blocked_until IS DISTINCT FROM NEW.blocked_until)
  EXECUTE FUNCTION payd_api_key_changed();
