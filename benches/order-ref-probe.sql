-- The order-reference probe of every merchant payment, on 1,000,000 successful payments of one merchant,
-- with the unique index led by the merchant (before) and by the reference (now). Generic plans, as a
-- prepared statement gets them. `psql -X -f benches/order-ref-probe.sql postgres://postgres@127.0.0.1/postgres`
-- creates and drops its own database.
\set ON_ERROR_STOP on
DROP DATABASE IF EXISTS payd_order_ref_probe;
CREATE DATABASE payd_order_ref_probe;
\c payd_order_ref_probe
CREATE TABLE operations (id bigserial PRIMARY KEY, kind text NOT NULL, status text NOT NULL,
                         merchant_id bigint, order_ref text, amount bigint NOT NULL);
INSERT INTO operations (kind, status, merchant_id, order_ref, amount)
  SELECT 'payment', 'success', 1, 'order-' || g, 50000 FROM generate_series(1, 1000000) g;
CREATE INDEX operations_merchant_idx ON operations (merchant_id, id);
CREATE INDEX operations_kind_idx ON operations (kind, id);
VACUUM ANALYZE operations;
SET plan_cache_mode = force_generic_plan;
PREPARE paid(bigint, text) AS SELECT EXISTS (SELECT 1 FROM operations WHERE merchant_id = $1 AND order_ref = $2
  AND kind = 'payment' AND status = 'success') AS paid;
\echo == merchant first
CREATE UNIQUE INDEX operations_order_ref ON operations (merchant_id, order_ref) WHERE kind = 'payment' AND status = 'success';
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE paid(1, 'order-777777');
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE paid(1, 'order-new');
DROP INDEX operations_order_ref;
DEALLOCATE paid;
PREPARE paid(bigint, text) AS SELECT EXISTS (SELECT 1 FROM operations WHERE merchant_id = $1 AND order_ref = $2
  AND kind = 'payment' AND status = 'success') AS paid;
\echo == reference first
CREATE UNIQUE INDEX operations_order_ref ON operations (order_ref, merchant_id) WHERE kind = 'payment' AND status = 'success';
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE paid(1, 'order-777777');
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE paid(1, 'order-new');
\c postgres
DROP DATABASE payd_order_ref_probe;
