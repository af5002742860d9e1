DROP INDEX merchants_archived_idx;
DROP INDEX cards_archived_idx;
DROP INDEX roles_archived_idx;
DROP INDEX users_archived_idx;
DROP INDEX merchant_documents_search_trgm;
DROP INDEX cards_search_trgm;
DROP INDEX operations_search_trgm;
-- pg_trgm stays installed: dropping an extension is not this migration's to decide.
