-- Merchant documents get versions: replacing a document inserts a new row (the next version) and
-- points the old one at it (`superseded_by`); old versions are kept for audit, never deleted. An owner
-- may withdraw a document that is still waiting for review (`status = 'withdrawn'`, `withdrawn_at`).
ALTER TABLE merchant_documents
    ADD COLUMN version       INT NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN replaces_id   BIGINT REFERENCES merchant_documents (id) ON DELETE RESTRICT,
    ADD COLUMN superseded_by BIGINT REFERENCES merchant_documents (id) ON DELETE RESTRICT,
    ADD COLUMN withdrawn_at  TIMESTAMPTZ;
ALTER TABLE merchant_documents DROP CONSTRAINT merchant_documents_status_check;
ALTER TABLE merchant_documents
    ADD CONSTRAINT merchant_documents_status_check CHECK (status IN ('submitted', 'approved', 'rejected', 'withdrawn'));
-- At most one newer version per document (two concurrent replaces cannot both win).
CREATE UNIQUE INDEX merchant_documents_replaces_idx ON merchant_documents (replaces_id) WHERE replaces_id IS NOT NULL;
-- The admin review queue: current versions by status, oldest first (keyset on id).
CREATE INDEX merchant_documents_queue_idx ON merchant_documents (status, id) WHERE superseded_by IS NULL;
