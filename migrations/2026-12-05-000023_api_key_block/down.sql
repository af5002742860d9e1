DROP TRIGGER merchant_api_keys_changed ON merchant_api_keys;
CREATE TRIGGER merchant_api_keys_changed AFTER UPDATE ON merchant_api_keys
  FOR EACH ROW
  WHEN (OLD.secret_hash IS DISTINCT FROM NEW.secret_hash OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.expires_at IS DISTINCT FROM NEW.expires_at OR OLD.merchant_id IS DISTINCT FROM NEW.merchant_id
        OR OLD.key_id IS DISTINCT FROM NEW.key_id)
  EXECUTE FUNCTION payd_api_key_changed();
ALTER TABLE merchant_api_keys DROP COLUMN blocked_until;
