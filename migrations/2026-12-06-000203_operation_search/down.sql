DROP FUNCTION payd_operation_page(text, bigint, bigint, bigint, bigint, text, timestamptz, timestamptz, smallint, bigint, bigint, text);
-- One page of an operation list (`GET /transfers`, `/topups`, `/withdrawals`, …), newest first, as one
-- fixed statement: the service sends the same text whatever the filters, and each branch below is a
-- fixed query whose plan PL/pgSQL prepares once per connection. The branch picks the index that
-- bounds the walk (keyset on `seq`): the source or destination card index when a card is named (both,
-- merged, for `card_id`), the caller's own cards for a user who is not an admin, else `(kind, seq)`.
-- Every other filter is applied in every branch; an absent one (NULL) lets every row through.
--   p_user: the caller when not an admin (only operations touching the caller's cards), else NULL.
--   p_archived: 0 = not archived, 1 = archived only, 2 = both.
CREATE FUNCTION payd_operation_page(
  p_kind text, p_user bigint, p_card bigint, p_from_card bigint, p_to_card bigint, p_status text,
  p_from timestamptz, p_to timestamptz, p_archived smallint, p_cursor bigint, p_limit bigint
) RETURNS SETOF operations LANGUAGE plpgsql STABLE AS $$
DECLARE
  mine bigint[];
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
      ORDER BY o.seq DESC LIMIT p_limit;
  ELSIF p_to_card IS NOT NULL THEN
    RETURN QUERY SELECT o.* FROM operations o
      WHERE o.dest_card_id = p_to_card AND o.seq < p_cursor AND o.kind = p_kind
        AND (p_card IS NULL OR o.source_card_id = p_card OR o.dest_card_id = p_card)
        AND (mine IS NULL OR o.source_card_id = ANY (mine) OR o.dest_card_id = ANY (mine))
        AND (p_status IS NULL OR o.status = p_status)
        AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
        AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
      ORDER BY o.seq DESC LIMIT p_limit;
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
        ORDER BY o.seq DESC LIMIT p_limit)
      UNION ALL
      (SELECT o.* FROM operations o
        WHERE o.dest_card_id = p_card AND o.seq < p_cursor AND o.kind = p_kind
          AND o.source_card_id IS DISTINCT FROM p_card
          AND (mine IS NULL OR o.source_card_id = ANY (mine) OR o.dest_card_id = ANY (mine))
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
          AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
        ORDER BY o.seq DESC LIMIT p_limit)
    ) u ORDER BY u.seq DESC LIMIT p_limit;
  ELSIF mine IS NOT NULL THEN
    RETURN QUERY SELECT u.* FROM (
      (SELECT o.* FROM operations o
        WHERE o.source_card_id = ANY (mine) AND o.seq < p_cursor AND o.kind = p_kind
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
          AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
        ORDER BY o.seq DESC LIMIT p_limit)
      UNION ALL
      (SELECT o.* FROM operations o
        WHERE o.dest_card_id = ANY (mine) AND o.seq < p_cursor AND o.kind = p_kind
          AND (o.source_card_id IS NULL OR NOT o.source_card_id = ANY (mine))
          AND (p_status IS NULL OR o.status = p_status)
          AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
          AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
        ORDER BY o.seq DESC LIMIT p_limit)
    ) u ORDER BY u.seq DESC LIMIT p_limit;
  ELSE
    RETURN QUERY SELECT o.* FROM operations o
      WHERE o.kind = p_kind AND o.seq < p_cursor
        AND (p_status IS NULL OR o.status = p_status)
        AND (p_from IS NULL OR o.created_at >= p_from) AND (p_to IS NULL OR o.created_at <= p_to)
        AND (p_archived = 2 OR (o.archived_at IS NULL) = (p_archived = 0))
      ORDER BY o.seq DESC LIMIT p_limit;
  END IF;
END $$;
