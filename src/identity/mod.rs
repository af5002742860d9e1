//! Identity and access: users, roles, registration with e-mail verification, sessions (access +
//! rotating refresh tokens), password change/reset, brute-force protection, and the admin APIs.

pub mod account;
pub mod admin;
pub mod model;
pub mod password;
pub mod profiles;
pub mod revocations;
pub mod routes;
pub mod service;
pub mod sessions;
pub mod tokens;

use crate::storage::StorageError;

/// Everything that can go wrong in identity; mapped to HTTP in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("an account with this e-mail already exists")]
    EmailTaken,
    #[error("e-mail or password is incorrect")]
    InvalidCredentials,
    #[error("e-mail address not verified; enter the code we sent or request a new one")]
    EmailNotVerified,
    #[error("this account is archived")]
    AccountArchived,
    #[error("too many failed logins; account locked, retry in {retry_after} seconds")]
    Locked { retry_after: u64 },
    #[error("too many requests; retry in {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    #[error("verification code is invalid or expired")]
    InvalidCode,
    #[error("e-mail address is already verified")]
    AlreadyVerified,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("refresh token was already used; the session has been revoked, log in again")]
    TokenReuse,
    #[error("current password is incorrect")]
    WrongPassword,
    #[error("user not found")]
    UserNotFound,
    #[error("role `{0}` not found")]
    RoleNotFound(String),
    #[error("a role with this name already exists")]
    RoleTaken,
    #[error("built-in role `{0}` cannot be renamed, archived or purged")]
    BuiltinRole(String),
    #[error("role `{0}` is still assigned to users; revoke it first")]
    RoleInUse(String),
    #[error("this would leave the platform without an active admin")]
    LastAdmin,
    #[error("record is not archived; archive it first")]
    NotArchived,
    #[error("record is already archived")]
    AlreadyArchived,
    #[error("user still holds cards or other records and cannot be purged; archive instead")]
    UserHasRecords,
    #[error("mail: {0}")]
    Mail(String),
    #[error("cache: {0}")]
    Cache(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for IdentityError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Storage(e.into())
    }
}

impl From<crate::cache::CacheError> for IdentityError {
    fn from(e: crate::cache::CacheError) -> Self {
        Self::Cache(e.0)
    }
}
