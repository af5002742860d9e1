DROP TABLE outbox;
DROP TABLE idempotency_keys;
DROP TABLE postings;
DROP TABLE operations;
DROP TABLE cards;
DROP TABLE accounts;
