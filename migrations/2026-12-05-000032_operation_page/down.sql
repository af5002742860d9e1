DROP FUNCTION payd_operation_page(text, bigint, bigint, bigint, bigint, text, timestamptz, timestamptz, smallint, bigint, bigint);
