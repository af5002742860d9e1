DROP TRIGGER IF EXISTS operations_deleted ON operations;
DROP TRIGGER IF EXISTS operations_updated ON operations;
DROP TRIGGER IF EXISTS operations_inserted ON operations;
DROP FUNCTION IF EXISTS payd_operations_deleted();
DROP FUNCTION IF EXISTS payd_operations_updated();
DROP FUNCTION IF EXISTS payd_operations_inserted();
