-- Free-text `search` on lists: substring matches (ILIKE '%…%') answered from trigram indexes, so a
-- search over a million operations does not read the table. The indexed expressions are exactly the
-- ones the list queries filter on. At the end: indexes of archived rows, for restore-all.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
-- Partial: transfers, withdrawals and reversals carry neither a reference nor a method, so the hot
-- ledger path writes no GIN entry for them (the search predicates repeat the condition).
CREATE INDEX operations_search_trgm ON operations
    USING gin ((coalesce(order_ref, '') || ' ' || coalesce(method, '')) gin_trgm_ops)
    WHERE order_ref IS NOT NULL OR method IS NOT NULL;
CREATE INDEX cards_search_trgm ON cards USING gin ((label || ' ' || pan_last4) gin_trgm_ops);
CREATE INDEX merchant_documents_search_trgm ON merchant_documents
    USING gin ((file_name || ' ' || doc_type) gin_trgm_ops);
-- Archived rows, for `restore-all` and the `archived` list filters: only the archived ones are indexed,
-- so restoring every archived row reads what it restores, not the whole table.
CREATE INDEX users_archived_idx ON users (id) WHERE archived_at IS NOT NULL;
CREATE INDEX roles_archived_idx ON roles (id) WHERE archived_at IS NOT NULL;
CREATE INDEX cards_archived_idx ON cards (id) WHERE archived_at IS NOT NULL;
CREATE INDEX merchants_archived_idx ON merchants (id) WHERE archived_at IS NOT NULL;
