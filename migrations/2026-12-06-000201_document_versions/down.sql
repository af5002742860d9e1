DROP INDEX merchant_documents_queue_idx;
DROP INDEX merchant_documents_replaces_idx;
ALTER TABLE merchant_documents
    DROP COLUMN withdrawn_at,
    DROP COLUMN superseded_by,
    DROP COLUMN replaces_id,
    DROP COLUMN version;
UPDATE merchant_documents SET status = 'rejected' WHERE status = 'withdrawn';
ALTER TABLE merchant_documents DROP CONSTRAINT merchant_documents_status_check;
ALTER TABLE merchant_documents
    ADD CONSTRAINT merchant_documents_status_check CHECK (status IN ('submitted', 'approved', 'rejected'));
