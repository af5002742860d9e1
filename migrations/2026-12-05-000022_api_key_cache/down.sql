DROP INDEX operations_order_ref;
CREATE UNIQUE INDEX operations_order_ref ON operations (merchant_id, order_ref)
  WHERE kind = 'payment' AND status = 'success';
DROP TRIGGER merchants_key_state_changed ON merchants;
DROP TRIGGER merchant_api_keys_deleted ON merchant_api_keys;
DROP TRIGGER merchant_api_keys_changed ON merchant_api_keys;
DROP FUNCTION payd_api_key_changed();
