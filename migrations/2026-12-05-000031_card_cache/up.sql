-- Card caches (`GET /cards/{id}`, statements) are invalidated by the database itself: any update or
-- delete of a card notifies channel `cards_changed` (payload: the card id) when the transaction
-- commits, whichever code path made it. New cards need no notification (a miss is never cached).
CREATE FUNCTION payd_card_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('cards_changed', OLD.id::text);
  RETURN NULL;
END $$;
CREATE TRIGGER cards_changed AFTER UPDATE OR DELETE ON cards
  FOR EACH ROW EXECUTE FUNCTION payd_card_changed();
