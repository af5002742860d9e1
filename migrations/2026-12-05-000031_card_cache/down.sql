DROP TRIGGER cards_changed ON cards;
DROP FUNCTION payd_card_changed();
