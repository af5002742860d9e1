-- The ledger: accounts (card "saldo" accounts and system accounts), cards, operations (journal entry
-- headers, immutable), postings (signed, balanced per operation), idempotency keys and the outbox.

CREATE TABLE accounts (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('card', 'funding', 'settlement', 'merchant')),
    -- Stable name of a system account, e.g. 'funding:visa' or 'settlement:withdrawals'.
    code        TEXT UNIQUE,
    currency    CHAR(3) NOT NULL,
    balance     BIGINT NOT NULL DEFAULT 0,
    -- NULL = unbounded (system accounts that represent money entering or leaving the platform).
    min_balance BIGINT,
    -- Mirrors the card status so the ledger's own guard can refuse debits of non-active cards.
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
    version     BIGINT NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT accounts_balance_floor CHECK (min_balance IS NULL OR balance >= min_balance),
    CONSTRAINT accounts_bounded_kinds CHECK (kind IN ('funding', 'settlement') OR min_balance IS NOT NULL),
    CONSTRAINT accounts_floor_not_positive CHECK (min_balance IS NULL OR min_balance <= 0)
);

CREATE TABLE cards (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    account_id   BIGINT NOT NULL UNIQUE REFERENCES accounts (id) ON DELETE RESTRICT,
    card_type    TEXT NOT NULL CHECK (card_type IN ('debit', 'credit')),
    brand        TEXT NOT NULL,
    -- The full PAN is never stored: a keyed hash for lookup and uniqueness, and a masked form to show.
    pan_hash     TEXT NOT NULL UNIQUE,
    pan_masked   TEXT NOT NULL,
    pan_last4    CHAR(4) NOT NULL,
    expiry_month INTEGER NOT NULL CHECK (expiry_month BETWEEN 1 AND 12),
    expiry_year  INTEGER NOT NULL CHECK (expiry_year BETWEEN 2000 AND 2200),
    credit_limit BIGINT NOT NULL DEFAULT 0 CHECK (credit_limit >= 0),
    label        TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    archived_at  TIMESTAMPTZ,
    CONSTRAINT cards_debit_has_no_limit CHECK (card_type = 'credit' OR credit_limit = 0)
);
CREATE INDEX cards_user_idx ON cards (user_id, id);

CREATE TABLE operations (
    id                UUID PRIMARY KEY,
    seq               BIGSERIAL NOT NULL UNIQUE,
    kind              TEXT NOT NULL CHECK (kind IN ('topup', 'withdrawal', 'transfer', 'payment', 'refund', 'reversal')),
    status            TEXT NOT NULL CHECK (status IN ('success', 'failed')),
    failure_reason    TEXT,
    amount            BIGINT NOT NULL CHECK (amount > 0),
    currency          CHAR(3) NOT NULL,
    method            TEXT,
    source_card_id    BIGINT REFERENCES cards (id),
    dest_card_id      BIGINT REFERENCES cards (id),
    debit_account_id  BIGINT NOT NULL REFERENCES accounts (id),
    credit_account_id BIGINT NOT NULL REFERENCES accounts (id),
    reverses_id       UUID REFERENCES operations (id),
    initiated_by      BIGINT,
    created_at        TIMESTAMPTZ NOT NULL,
    archived_at       TIMESTAMPTZ,
    CONSTRAINT operations_failure_reason CHECK ((status = 'failed') = (failure_reason IS NOT NULL)),
    CONSTRAINT operations_reversal_link CHECK ((kind = 'reversal') = (reverses_id IS NOT NULL))
);
CREATE INDEX operations_kind_seq_idx ON operations (kind, seq);
CREATE INDEX operations_source_idx ON operations (source_card_id, seq);
CREATE INDEX operations_dest_idx ON operations (dest_card_id, seq);
-- At most one successful reversal per operation.
CREATE UNIQUE INDEX operations_one_reversal ON operations (reverses_id) WHERE status = 'success';

CREATE TABLE postings (
    id            BIGSERIAL PRIMARY KEY,
    operation_id  UUID NOT NULL REFERENCES operations (id),
    account_id    BIGINT NOT NULL REFERENCES accounts (id),
    amount        BIGINT NOT NULL CHECK (amount <> 0),
    balance_after BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX postings_account_idx ON postings (account_id, id);
CREATE INDEX postings_operation_idx ON postings (operation_id);

CREATE TABLE idempotency_keys (
    scope           TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    operation_id    UUID REFERENCES operations (id),
    response_status SMALLINT NOT NULL,
    response_body   JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE TABLE outbox (
    id             BIGSERIAL PRIMARY KEY,
    event_id       UUID NOT NULL UNIQUE,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    aggregate_type TEXT NOT NULL,
    aggregate_key  TEXT NOT NULL,
    payload        JSONB NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at   TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
