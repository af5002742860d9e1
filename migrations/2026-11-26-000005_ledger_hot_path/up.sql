-- The ledger writer's hot path. Every row of operations, postings and idempotency_keys is written by
-- the ledger writer alone, from ids the actors loaded from the database and the guarded balance update
-- re-checked in the same transaction; the per-row foreign-key triggers cost ~40% of a batch commit.
-- They are replaced by `payd verify`'s referential checks (orphan operations, postings, keys).
ALTER TABLE postings DROP CONSTRAINT postings_operation_id_fkey;
ALTER TABLE postings DROP CONSTRAINT postings_account_id_fkey;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_operation_id_fkey;
ALTER TABLE operations DROP CONSTRAINT operations_source_card_id_fkey;
ALTER TABLE operations DROP CONSTRAINT operations_dest_card_id_fkey;
ALTER TABLE operations DROP CONSTRAINT operations_debit_account_id_fkey;
ALTER TABLE operations DROP CONSTRAINT operations_credit_account_id_fkey;
ALTER TABLE operations DROP CONSTRAINT operations_reverses_id_fkey;
ALTER TABLE operations DROP CONSTRAINT operations_merchant_id_fkey;
ALTER TABLE operations DROP CONSTRAINT operations_api_key_id_fkey;
-- `seq` comes from its own sequence; the unique index only cost an insertion per operation.
ALTER TABLE operations DROP CONSTRAINT operations_seq_key;
