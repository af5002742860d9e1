DROP TABLE mailbox;
DROP TABLE refresh_tokens;
DROP TABLE password_resets;
DROP TABLE email_verifications;
DROP TABLE user_roles;
DROP TABLE users;
DROP TABLE roles;
