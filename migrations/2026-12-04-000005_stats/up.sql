-- Statistics: daily rollups of committed operations, maintained by the stats job (src/stats/rollup.rs)
-- from operations in `seq` order behind a watermark, never inside the ledger writer's transaction.
-- Every statistics query reads these tables only; `payd stats rebuild` recomputes them from the ledger
-- and `payd verify` checks them against a fresh aggregation.

-- Operation figures per day (in the platform time zone) and scope.
CREATE TABLE stats_daily (
    -- 'all' (platform, scope_id 0), 'card', 'merchant' or 'api_key'.
    scope      TEXT NOT NULL CHECK (scope IN ('all', 'card', 'merchant', 'api_key')),
    scope_id   BIGINT NOT NULL,
    -- For 'card': the card's side of the original operation, 'src' (paid / sent) or 'dst' (received).
    role       TEXT NOT NULL CHECK (role IN ('', 'src', 'dst')),
    -- The operation kind; a reversal or refund is filed under the kind of what it corrects.
    kind       TEXT NOT NULL,
    -- TRUE for reversals and refunds: they reduce the figures of `kind`.
    correction BOOLEAN NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('success', 'failed')),
    -- The failure reason ('' for successes); platform scope only.
    reason     TEXT NOT NULL,
    method     TEXT NOT NULL,
    currency   CHAR(3) NOT NULL,
    day        DATE NOT NULL,
    n          BIGINT NOT NULL,
    amount     BIGINT NOT NULL,
    PRIMARY KEY (scope, scope_id, kind, day, role, correction, status, reason, method, currency)
);

-- Card balances per day: the net flow of the day's postings on card accounts and, per card, the
-- running balance after its last posting of the day (the ledger's `balance_after`).
CREATE TABLE stats_balance_daily (
    scope        TEXT NOT NULL CHECK (scope IN ('all', 'card')),
    scope_id     BIGINT NOT NULL,
    currency     CHAR(3) NOT NULL,
    day          DATE NOT NULL,
    postings     BIGINT NOT NULL,
    net          BIGINT NOT NULL,
    -- Card scope: balance_after of the posting with the highest id of the day (NULL for 'all').
    closing      BIGINT,
    last_posting BIGINT,
    PRIMARY KEY (scope, scope_id, currency, day)
);

-- How far the rollups go: every operation with seq <= upto is counted, except the seqs in stats_gaps
-- (taken by a transaction that had not committed when the job passed them; counted when they appear,
-- forgotten after a grace period — a rolled-back batch leaves its seqs unused forever).
-- The job holds this row's lock (FOR UPDATE SKIP LOCKED) for a round, so one instance at a time works.
CREATE TABLE stats_watermark (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    upto       BIGINT NOT NULL DEFAULT 0,
    -- The time zone the days were computed in; a different configured zone triggers a rebuild.
    time_zone  TEXT NOT NULL DEFAULT 'UTC',
    rebuilt_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO stats_watermark (id) VALUES (1);

CREATE TABLE stats_gaps (
    seq        BIGINT PRIMARY KEY,
    noticed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
