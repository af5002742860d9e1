-- Which money notifications a user wants. No row: the configured defaults (top-ups, withdrawals and
-- payments on; transfers from `notifications.transfer_min_amount`). The notifier reads these rows for
-- the recipients of a batch and queues no e-mail (and records nothing) for what a user opted out of.
CREATE TABLE notification_preferences (
    user_id             BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    topups              BOOLEAN NOT NULL,
    withdrawals         BOOLEAN NOT NULL,
    payments            BOOLEAN NOT NULL,
    transfers           BOOLEAN NOT NULL,
    -- Minor units: a transfer is e-mailed to this user only if it moves at least this much.
    transfer_min_amount BIGINT NOT NULL CHECK (transfer_min_amount >= 0),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
