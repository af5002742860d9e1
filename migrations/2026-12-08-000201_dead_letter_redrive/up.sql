-- When an admin re-queued a dead letter's event for publishing (NULL: never); a second redrive of
-- the same dead letter is a no-op.
ALTER TABLE dead_letters ADD COLUMN redriven_at TIMESTAMPTZ;
