-- A failed operation's reason is one of the codes the platform records (FailureCode in
-- src/payments/kind.rs): the closed list is now a constraint of the table, as kind and status are.
-- NOT VALID then VALIDATE: adding takes only a brief lock; validating scans without blocking writes.
ALTER TABLE operations
    ADD CONSTRAINT operations_failure_reason_code CHECK (failure_reason IN (
        'same_account', 'card_frozen', 'card_closed', 'card_expired', 'insufficient_funds', 'refund_exceeded',
        'rejected', 'card_unknown', 'invalid_expiry', 'invalid_cvv', 'card_locked')) NOT VALID;
ALTER TABLE operations VALIDATE CONSTRAINT operations_failure_reason_code;
