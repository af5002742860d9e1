-- Events: relay leases on the outbox, consumer-side dedupe, e-mail jobs (the notifier's own outbox,
-- also the only path for e-mails that carry a secret), dead letters, and merchant webhooks.

-- The relay claims rows with a lease so several payd instances never publish the same row at once.
ALTER TABLE outbox ADD COLUMN lease_owner UUID;
ALTER TABLE outbox ADD COLUMN lease_until TIMESTAMPTZ;
ALTER TABLE outbox ADD COLUMN publish_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
-- Per-key order check of the claim ("no earlier unpublished row of this key is leased elsewhere").
CREATE INDEX outbox_unpublished_key_idx ON outbox (aggregate_key, id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- One row per (consumer, event) handled: inserted in the same transaction as the consumer's effects,
-- so a redelivered event is recognised and acknowledged without doing anything twice.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_at_idx ON processed_events (processed_at);

-- E-mails to send. Written by the notifier (from events) or directly by identity in the transaction
-- of the change (verification codes, reset tokens: secrets never travel through the broker). The
-- sender worker delivers them with retries; `sensitive` contexts are scrubbed once delivered or dead.
CREATE TABLE email_jobs (
    id              BIGSERIAL PRIMARY KEY,
    dedupe_key      TEXT NOT NULL UNIQUE,
    event_id        UUID,
    template        TEXT NOT NULL,
    to_address      TEXT NOT NULL,
    context         JSONB NOT NULL,
    sensitive       BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until     TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ
);
CREATE INDEX email_jobs_due_idx ON email_jobs (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX email_jobs_event_idx ON email_jobs (event_id) WHERE event_id IS NOT NULL;

-- What could not be processed: e-mails and webhook deliveries that used up their attempts, and broker
-- messages that could not be parsed or were rejected by their consumer.
CREATE TABLE dead_letters (
    id         BIGSERIAL PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('email', 'webhook', 'message')),
    consumer   TEXT NOT NULL,
    reference  TEXT NOT NULL,
    event_id   UUID,
    reason     TEXT NOT NULL,
    -- For malformed messages only: the raw message (truncated). Never an e-mail body.
    payload    TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_kind_idx ON dead_letters (kind, id);

CREATE TABLE webhook_endpoints (
    id                   BIGSERIAL PRIMARY KEY,
    merchant_id          BIGINT NOT NULL REFERENCES merchants (id) ON DELETE CASCADE,
    url                  TEXT NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    description          TEXT NOT NULL DEFAULT '',
    event_types          TEXT[] NOT NULL CHECK (cardinality(event_types) > 0),
    -- HMAC keys (needed in clear to sign). The previous one stays valid until previous_expires_at.
    secret               TEXT NOT NULL,
    previous_secret      TEXT,
    previous_expires_at  TIMESTAMPTZ,
    status               TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason      TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    created_by           BIGINT REFERENCES users (id),
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoints_previous CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL))
);
CREATE INDEX webhook_endpoints_merchant_idx ON webhook_endpoints (merchant_id, id);

CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    endpoint_id     BIGINT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        UUID NOT NULL,
    event_type      TEXT NOT NULL,
    -- The exact bytes that are signed and sent (redeliveries send the same body).
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Retries stop once this is older than webhooks.max_age_secs (reset by a manual redelivery).
    window_start    TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until     TIMESTAMPTZ,
    -- Set by a manual redelivery; the next attempt is logged as manual.
    manual          BOOLEAN NOT NULL DEFAULT FALSE,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ,
    CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at, id) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  BIGINT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  BIGINT NOT NULL,
    manual       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);
