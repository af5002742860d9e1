-- Documents stored only in the database are lost with this table: export them first
-- (`payd documents export --to DIR` writes each blob under its key).
DROP TABLE document_blobs;
