-- Search within a card (`card_id` + `search` on an operation list), bounded: it walked the card's
-- index and filtered every operation of the card (459 ms for a reference that matches nothing on a
-- card with 500,000 transfers; docs/benchmarks.md, "Reads at 1,000,000 operations, fourth round").
-- Now `payd_operation_page` reads at most the card's newest 2,000 operations per side, and only when
-- they do not fill the page does it ask `operations_card_search` for the card's older matches.
-- Like the admin search, a search only matches operations with an order reference or a method (the
-- rows `operations_search_trgm` and this index hold): a term of spaces alone no longer matches the
-- blank text of an operation without either, as in the admin search.
--
-- The index (btree_gin, so the card ids and the trigrams are one GIN index) holds only operations
-- with an order reference or a method (payments, refunds, top-ups with a method): one more GIN entry
-- set per such operation written. Production: diesel runs a migration in one transaction, where
-- CREATE INDEX CONCURRENTLY is refused; on a large table build it beforehand with CREATE INDEX
-- CONCURRENTLY (same definition), and this migration finds it (IF NOT EXISTS).
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX IF NOT EXISTS operations_card_search ON operations USING gin (
  source_card_id, dest_card_id, (coalesce(order_ref, '') || ' ' || coalesce(method, '')) gin_trgm_ops
) WHERE order_ref IS NOT NULL OR method IS NOT NULL;
CREATE OR REPLACE FUNCTION payd_operation_page(
  p_kind text, p_user bigint, p_card bigint, p_from_card bigint, p_to_card bigint, p_status text,
  p_from timestamptz, p_to timestamptz, p_archived smallint, p_cursor bigint, p_limit bigint,
  p_search text
) RETURNS SETOF operations LANGUAGE plpgsql STABLE AS $$
DECLARE
  mine bigint[];
  s_lo bigint;
  d_lo bigint;
  lo bigint;
  n bigint;
BEGIN
  IF p_user IS NOT NULL THEN
    SELECT coalesce(array_agg(c.id), '{}') INTO mine FROM cards c WHERE c.user_id = p_user;
  END IF;
  IF p_from_card IS NOT NULL THEN
    RETURN QUERY SELECT o.* FROM operations o
      WHERE o.source_card_id = p_from_card AND o.seq < p_cursor AND o.kind = p_kind
        AND (p_card IS NULL OR o.source_card_id = p_card OR o.dest_card_id = p_card)
        AND (p_to_card IS NULL OR o.dest_card_id = p_to_card)
        AND (mine IS NULL OR o.source_card_id = ANY (mine) OR o.dest_card_id = ANY (mine))
        AND (p_status IS NULL OR o.status = p_status)
        AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
        AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
        AND (p_search IS NULL OR (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search)
      ORDER BY o.seq DESC LIMIT p_limit;
  ELSIF p_to_card IS NOT NULL THEN
    RETURN QUERY SELECT o.* FROM operations o
      WHERE o.dest_card_id = p_to_card AND o.seq < p_cursor AND o.kind = p_kind
        AND (p_card IS NULL OR o.source_card_id = p_card OR o.dest_card_id = p_card)
        AND (mine IS NULL OR o.source_card_id = ANY (mine) OR o.dest_card_id = ANY (mine))
        AND (p_status IS NULL OR o.status = p_status)
        AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
        AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
        AND (p_search IS NULL OR (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search)
      ORDER BY o.seq DESC LIMIT p_limit;
  ELSIF p_card IS NOT NULL AND p_search IS NOT NULL THEN
    -- A search within a card, in two bounded steps. First the card's newest 2,000 operations per side
    -- below the cursor (any kind): `lo` is the seq above which both sides were read whole (a side
    -- with fewer below the cursor was read whole). The matches at or above `lo` come from the
    -- card branch's walks cut at `lo` (at most 2,000 rows per side). If they fill the page, or the
    -- card had nothing older, that is the page. Otherwise the rest of the page, older than `lo`,
    -- comes from `operations_card_search` (btree_gin: the card and the trigrams in one GIN scan, so
    -- only the card's matches are read), planned for the pattern at hand (EXECUTE).
    SELECT CASE WHEN count(*) < 2000 THEN NULL ELSE min(w.seq) END INTO s_lo FROM (
      SELECT o.seq FROM operations o WHERE o.source_card_id = p_card AND o.seq < p_cursor
      ORDER BY o.seq DESC LIMIT 2000) w;
    SELECT CASE WHEN count(*) < 2000 THEN NULL ELSE min(w.seq) END INTO d_lo FROM (
      SELECT o.seq FROM operations o WHERE o.dest_card_id = p_card AND o.seq < p_cursor
      ORDER BY o.seq DESC LIMIT 2000) w;
    lo := greatest(s_lo, d_lo);
    RETURN QUERY SELECT u.* FROM (
      (SELECT o.* FROM operations o
        WHERE o.source_card_id = p_card AND o.seq < p_cursor AND o.seq >= coalesce(lo, 0) AND o.kind = p_kind
          AND (mine IS NULL OR o.source_card_id = ANY (mine) OR o.dest_card_id = ANY (mine))
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
          AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
          AND (o.order_ref IS NOT NULL OR o.method IS NOT NULL)
          AND (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search
        ORDER BY o.seq DESC LIMIT p_limit)
      UNION ALL
      (SELECT o.* FROM operations o
        WHERE o.dest_card_id = p_card AND o.seq < p_cursor AND o.seq >= coalesce(lo, 0) AND o.kind = p_kind
          AND o.source_card_id IS DISTINCT FROM p_card
          AND (mine IS NULL OR o.source_card_id = ANY (mine) OR o.dest_card_id = ANY (mine))
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
          AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
          AND (o.order_ref IS NOT NULL OR o.method IS NOT NULL)
          AND (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search
        ORDER BY o.seq DESC LIMIT p_limit)
    ) u ORDER BY u.seq DESC LIMIT p_limit;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n >= p_limit OR lo IS NULL THEN
      RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
      SELECT u.* FROM (
        (SELECT o.* FROM operations o
          WHERE o.source_card_id = $1 AND (o.order_ref IS NOT NULL OR o.method IS NOT NULL)
            AND (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE $2
            AND o.seq < $3 AND o.kind = $4
            AND ($5::bigint[] IS NULL OR o.source_card_id = ANY ($5) OR o.dest_card_id = ANY ($5))
            AND ($6::text IS NULL OR o.status = $6)
            AND ($7::timestamptz IS NULL OR o.created_at >= $7) AND ($8::timestamptz IS NULL OR o.created_at <= $8)
            AND ($9 = 2 OR (o.archived_at IS NULL) = ($9 = 0))
          ORDER BY o.seq DESC LIMIT $10)
        UNION ALL
        (SELECT o.* FROM operations o
          WHERE o.dest_card_id = $1 AND (o.order_ref IS NOT NULL OR o.method IS NOT NULL)
            AND (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE $2
            AND o.seq < $3 AND o.kind = $4 AND o.source_card_id IS DISTINCT FROM $1
            AND ($5::bigint[] IS NULL OR o.source_card_id = ANY ($5) OR o.dest_card_id = ANY ($5))
            AND ($6::text IS NULL OR o.status = $6)
            AND ($7::timestamptz IS NULL OR o.created_at >= $7) AND ($8::timestamptz IS NULL OR o.created_at <= $8)
            AND ($9 = 2 OR (o.archived_at IS NULL) = ($9 = 0))
          ORDER BY o.seq DESC LIMIT $10)
      ) u ORDER BY u.seq DESC LIMIT $10 $q$
      USING p_card, p_search, lo, p_kind, mine, p_status, p_from, p_to, p_archived, p_limit - n;
  ELSIF p_card IS NOT NULL THEN
    -- Both sides of the card, each walked backwards and cut at the page size, then merged (an
    -- operation from the card to itself comes from the first side only).
    RETURN QUERY SELECT u.* FROM (
      (SELECT o.* FROM operations o
        WHERE o.source_card_id = p_card AND o.seq < p_cursor AND o.kind = p_kind
          AND (mine IS NULL OR o.source_card_id = ANY (mine) OR o.dest_card_id = ANY (mine))
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
          AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
        AND (p_search IS NULL OR (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search)
        ORDER BY o.seq DESC LIMIT p_limit)
      UNION ALL
      (SELECT o.* FROM operations o
        WHERE o.dest_card_id = p_card AND o.seq < p_cursor AND o.kind = p_kind
          AND o.source_card_id IS DISTINCT FROM p_card
          AND (mine IS NULL OR o.source_card_id = ANY (mine) OR o.dest_card_id = ANY (mine))
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
          AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
        AND (p_search IS NULL OR (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search)
        ORDER BY o.seq DESC LIMIT p_limit)
    ) u ORDER BY u.seq DESC LIMIT p_limit;
  ELSIF mine IS NOT NULL THEN
    -- The caller's own cards: per card and side, the newest operations below the cursor (one walk of
    -- `operations_source_idx` / `operations_dest_idx` per card, cut at the page size), then the page
    -- from those. At most 2 × cards × limit rows are read however long the cards' histories are; a
    -- `= ANY (mine)` scan instead returns every operation of the cards and sorts them all.
    RETURN QUERY SELECT u.* FROM (
      SELECT s.* FROM unnest(mine) AS c(id) CROSS JOIN LATERAL (
        SELECT o.* FROM operations o
        WHERE o.source_card_id = c.id AND o.seq < p_cursor AND o.kind = p_kind
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
          AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
          AND (p_search IS NULL OR (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search)
        ORDER BY o.seq DESC LIMIT p_limit) s
      UNION ALL
      SELECT d.* FROM unnest(mine) AS c(id) CROSS JOIN LATERAL (
        SELECT o.* FROM operations o
        WHERE o.dest_card_id = c.id AND o.seq < p_cursor AND o.kind = p_kind
          AND (o.source_card_id IS NULL OR NOT o.source_card_id = ANY (mine))
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
          AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
          AND (p_search IS NULL OR (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search)
        ORDER BY o.seq DESC LIMIT p_limit) d
    ) u ORDER BY u.seq DESC LIMIT p_limit;
  ELSIF p_search IS NOT NULL THEN
    -- Every operation (admins) with a search: the matches come from `operations_search_trgm`, then
    -- the page is cut from them (the walk on `(kind, seq)` could read the whole history for a rare
    -- match). EXECUTE plans it for the pattern at hand each time: a cached generic plan cannot tell a
    -- rare reference from a common method and walks `(kind, seq)` (measured: 990 ms for one match in
    -- 400,000 payments, against 6 ms planned for the pattern).
    RETURN QUERY EXECUTE $q$
      SELECT o.* FROM operations o
        WHERE (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE $1
          AND (o.order_ref IS NOT NULL OR o.method IS NOT NULL)
          AND o.kind = $2 AND o.seq < $3
          AND ($4::text IS NULL OR o.status = $4)
          AND ($5::timestamptz IS NULL OR o.created_at >= $5) AND ($6::timestamptz IS NULL OR o.created_at <= $6)
          AND ($7 = 2 OR (o.archived_at IS NULL) = ($7 = 0))
        ORDER BY o.seq DESC LIMIT $8 $q$
      USING p_search, p_kind, p_cursor, p_status, p_from, p_to, p_archived, p_limit;
  ELSIF p_status = 'failed' THEN
    RETURN QUERY SELECT o.* FROM operations o
      WHERE o.status = 'failed' AND o.kind = p_kind AND o.seq < p_cursor
        AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
        AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
        AND (p_search IS NULL OR (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search)
      ORDER BY o.seq DESC LIMIT p_limit;
  ELSIF p_archived = 1 THEN
    RETURN QUERY SELECT o.* FROM operations o
      WHERE o.archived_at IS NOT NULL AND o.kind = p_kind AND o.seq < p_cursor
        AND (p_status IS NULL OR o.status = p_status)
        AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
        AND (p_search IS NULL OR (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search)
      ORDER BY o.seq DESC LIMIT p_limit;
  ELSE
    RETURN QUERY SELECT o.* FROM operations o
      WHERE o.kind = p_kind AND o.seq < p_cursor
        AND (p_status IS NULL OR o.status = p_status)
        AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
        AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
        AND (p_search IS NULL OR (coalesce(o.order_ref, '') || ' ' || coalesce(o.method, '')) ILIKE p_search)
      ORDER BY o.seq DESC LIMIT p_limit;
  END IF;
END $$;
