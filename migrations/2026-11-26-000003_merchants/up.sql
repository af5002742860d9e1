-- Merchants: onboarding with documents and admin decisions, API keys, merchant payments and refunds.

CREATE TABLE merchants (
    id               BIGSERIAL PRIMARY KEY,
    owner_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    account_id       BIGINT NOT NULL UNIQUE REFERENCES accounts (id) ON DELETE RESTRICT,
    business_name    TEXT NOT NULL CHECK (length(business_name) BETWEEN 2 AND 200),
    contact_email    TEXT NOT NULL,
    category         TEXT NOT NULL,
    website          TEXT NOT NULL DEFAULT '',
    description      TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'active', 'rejected', 'suspended', 'closed')),
    status_reason    TEXT,
    decided_by       BIGINT REFERENCES users (id),
    decided_at       TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    archived_at      TIMESTAMPTZ
);
CREATE INDEX merchants_owner_idx ON merchants (owner_id);
CREATE INDEX merchants_status_idx ON merchants (status, id);

CREATE TABLE merchant_documents (
    id           BIGSERIAL PRIMARY KEY,
    merchant_id  BIGINT NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    doc_type     TEXT NOT NULL CHECK (doc_type IN ('business_licence', 'owner_identity', 'tax_id', 'bank_statement')),
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL CHECK (content_type IN ('application/pdf', 'image/png', 'image/jpeg')),
    size_bytes   BIGINT NOT NULL CHECK (size_bytes > 0),
    sha256       TEXT NOT NULL,
    storage_key  TEXT NOT NULL UNIQUE,
    status       TEXT NOT NULL DEFAULT 'submitted' CHECK (status IN ('submitted', 'approved', 'rejected')),
    review_note  TEXT,
    reviewed_by  BIGINT REFERENCES users (id),
    reviewed_at  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX merchant_documents_merchant_idx ON merchant_documents (merchant_id, id);

CREATE TABLE merchant_api_keys (
    id           BIGSERIAL PRIMARY KEY,
    merchant_id  BIGINT NOT NULL REFERENCES merchants (id) ON DELETE RESTRICT,
    label        TEXT NOT NULL DEFAULT '',
    -- Public part of the key (looked up), the secret part is stored only as a keyed hash.
    key_id       TEXT NOT NULL UNIQUE,
    secret_hash  TEXT NOT NULL,
    created_by   BIGINT REFERENCES users (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when rotated: the old key keeps working until then.
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    rotated_to   BIGINT REFERENCES merchant_api_keys (id)
);
CREATE INDEX merchant_api_keys_merchant_idx ON merchant_api_keys (merchant_id, id);

ALTER TABLE operations ADD COLUMN merchant_id BIGINT REFERENCES merchants (id);
ALTER TABLE operations ADD COLUMN api_key_id BIGINT REFERENCES merchant_api_keys (id);
ALTER TABLE operations ADD COLUMN order_ref TEXT;
ALTER TABLE operations DROP CONSTRAINT operations_reversal_link;
ALTER TABLE operations ADD CONSTRAINT operations_reversal_link
    CHECK ((kind IN ('reversal', 'refund')) = (reverses_id IS NOT NULL));
ALTER TABLE operations ADD CONSTRAINT operations_payment_fields
    CHECK (kind NOT IN ('payment', 'refund') OR merchant_id IS NOT NULL);
DROP INDEX operations_one_reversal;
CREATE UNIQUE INDEX operations_one_reversal ON operations (reverses_id) WHERE status = 'success' AND kind = 'reversal';
-- An order reference is paid at most once per merchant.
CREATE UNIQUE INDEX operations_order_ref ON operations (merchant_id, order_ref) WHERE kind = 'payment' AND status = 'success';
CREATE INDEX operations_merchant_idx ON operations (merchant_id, seq) WHERE merchant_id IS NOT NULL;

-- Running refund total per payment, updated in the refund's own ledger transaction: the CHECK is what
-- makes concurrent refunds unable to exceed the payment.
CREATE TABLE refund_totals (
    payment_id UUID PRIMARY KEY REFERENCES operations (id),
    cap        BIGINT NOT NULL CHECK (cap > 0),
    refunded   BIGINT NOT NULL CHECK (refunded > 0),
    CONSTRAINT refund_totals_within_cap CHECK (refunded <= cap)
);
