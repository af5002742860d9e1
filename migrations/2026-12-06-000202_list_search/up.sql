-- Free-text `search` on lists: substring matches (ILIKE '%…%') answered from trigram indexes, so a
-- search over a million operations does not read the table. The indexed expressions are exactly the
-- ones the list queries filter on.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX operations_search_trgm ON operations
    USING gin ((coalesce(order_ref, '') || ' ' || coalesce(method, '')) gin_trgm_ops);
CREATE INDEX cards_search_trgm ON cards USING gin ((label || ' ' || pan_last4) gin_trgm_ops);
CREATE INDEX merchant_documents_search_trgm ON merchant_documents
    USING gin ((file_name || ' ' || doc_type) gin_trgm_ops);
