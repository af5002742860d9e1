DROP FUNCTION payd_statement_page(bigint, bigint, timestamptz, timestamptz, bigint);
DROP INDEX IF EXISTS postings_account_created_idx;
