ALTER TABLE dead_letters DROP COLUMN redriven_at;
