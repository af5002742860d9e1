CREATE TABLE stats_balance_daily (
    scope        TEXT NOT NULL CHECK (scope IN ('all', 'card')),
    scope_id     BIGINT NOT NULL,
    currency     CHAR(3) NOT NULL,
    day          DATE NOT NULL,
    postings     BIGINT NOT NULL,
    net          BIGINT NOT NULL,
    closing      BIGINT,
    last_posting BIGINT,
    PRIMARY KEY (scope, scope_id, currency, day)
);
ALTER TABLE stats_daily RESET (fillfactor);
DELETE FROM stats_daily;
DELETE FROM stats_gaps;
UPDATE stats_watermark SET upto = 0, updated_at = now();
