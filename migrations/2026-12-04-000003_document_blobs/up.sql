-- Merchant documents in PostgreSQL: every replica sees every upload, and payd needs no writable disk.
-- Rows written before this migration keep their files under merchants.document_dir; payd still reads
-- those until `payd documents import` has copied them here (it checks each file's SHA-256).
CREATE TABLE document_blobs (
    key        TEXT PRIMARY KEY,
    bytes      BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- PDFs, PNGs and JPEGs are already compressed: store them out of line without trying pglz first.
ALTER TABLE document_blobs ALTER COLUMN bytes SET STORAGE EXTERNAL;
