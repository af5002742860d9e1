-- API keys are cached in process; the database invalidates the caches: a change to a key's secret,
-- revocation, expiry or merchant, and a change of a merchant's status or account, notifies channel
-- `payd_api_keys` with the public key id(s) concerned when the transaction commits, whichever code
-- path made it. `last_used_at` (written at most once a minute per key) notifies nothing.
CREATE FUNCTION payd_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'merchant_api_keys' THEN
    PERFORM pg_notify('payd_api_keys', COALESCE(NEW.key_id, OLD.key_id));
  ELSE
    PERFORM pg_notify('payd_api_keys', k.key_id)
      FROM merchant_api_keys k WHERE k.merchant_id = COALESCE(NEW.id, OLD.id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER merchant_api_keys_changed AFTER UPDATE ON merchant_api_keys
  FOR EACH ROW
  WHEN (OLD.secret_hash IS DISTINCT FROM NEW.secret_hash OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.expires_at IS DISTINCT FROM NEW.expires_at OR OLD.merchant_id IS DISTINCT FROM NEW.merchant_id
        OR OLD.key_id IS DISTINCT FROM NEW.key_id)
  EXECUTE FUNCTION payd_api_key_changed();
CREATE TRIGGER merchant_api_keys_deleted AFTER DELETE ON merchant_api_keys
  FOR EACH ROW EXECUTE FUNCTION payd_api_key_changed();
CREATE TRIGGER merchants_key_state_changed AFTER UPDATE ON merchants
  FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.account_id IS DISTINCT FROM NEW.account_id)
  EXECUTE FUNCTION payd_api_key_changed();

-- The order-reference probe of every payment: the reference first. With the merchant first, one hot
-- merchant's payments share the leading column and the probe walked far more of the index.
DROP INDEX operations_order_ref;
CREATE UNIQUE INDEX operations_order_ref ON operations (order_ref, merchant_id)
  WHERE kind = 'payment' AND status = 'success';
