//! PostgreSQL access: the r2d2 pool, running diesel off the async executor, transactions, migrations,
//! database creation, and the one translation of database errors.

pub mod notified;
pub mod schema;
pub mod text_enum;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type PgConn = PooledConnection<ConnectionManager<PgConnection>>;

/// Database failures, translated once from diesel/r2d2.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("record not found")]
    NotFound,
    /// A unique or exclusion constraint refused the write; carries the constraint name.
    #[error("conflicts with an existing record ({0})")]
    Conflict(String),
    /// A foreign-key constraint refused the write or delete; carries the constraint name.
    #[error("still referenced by other records ({0})")]
    Referenced(String),
    /// A CHECK constraint refused the write; carries the constraint name.
    #[error("violates a database rule ({0})")]
    Check(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<DieselError> for StorageError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(kind, info) => {
                let name = info.constraint_name().unwrap_or("unknown").to_owned();
                match kind {
                    DatabaseErrorKind::UniqueViolation => Self::Conflict(name),
                    DatabaseErrorKind::ForeignKeyViolation => Self::Referenced(name),
                    DatabaseErrorKind::CheckViolation => Self::Check(name),
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                        Self::Unavailable(info.message().to_owned())
                    }
                    _ => Self::Other(info.message().to_owned()),
                }
            }
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StorageError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// Builds the connection pool (connections are opened lazily, so this does not fail when the server is down).
///
/// A connection is not tested when it is checked out: r2d2's default test is a `SELECT 1` round trip
/// before every use, as costly as the one query a read route sends. A connection the server dropped
/// fails the request that uses it (503 through [`StorageError::Unavailable`]); libpq then reports its
/// status as unknown, diesel marks it broken, and the pool discards it on return.
///
/// # Errors
/// `StorageError::Unavailable` when the pool cannot be configured.
pub fn pool(url: &str, size: u32) -> Result<PgPool, StorageError> {
    Ok(Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .test_on_check_out(false)
        .connection_timeout(std::time::Duration::from_secs(5))
        .build_unchecked(ConnectionManager::<PgConnection>::new(url)))
}

/// Runs blocking diesel work on the blocking thread pool, never on the async executor.
///
/// # Errors
/// The closure's error, or `StorageError::Unavailable` (converted into `E`) when no connection is available.
pub async fn run<T, E, F>(pool: &PgPool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StorageError> + Send + 'static,
{
    let pool = pool.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().map_err(StorageError::from)?;
        f(&mut conn)
    })
    .await;
    match joined {
        Ok(result) => result,
        Err(e) => Err(StorageError::Other(format!("blocking task failed: {e}")).into()),
    }
}

/// Like [`run`], inside one database transaction (rolled back when the closure returns an error).
///
/// # Errors
/// As [`run`].
pub async fn transaction<T, E, F>(pool: &PgPool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut PgConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StorageError> + From<DieselError> + Send + 'static,
{
    run(pool, move |conn| conn.transaction(f)).await
}

/// Applies pending migrations; returns the versions applied.
///
/// # Errors
/// `StorageError::Other` describing the failed migration.
pub fn migrate_up(conn: &mut PgConnection) -> Result<Vec<String>, StorageError> {
    conn.run_pending_migrations(MIGRATIONS)
        .map(|v| v.iter().map(ToString::to_string).collect())
        .map_err(|e| StorageError::Other(format!("migration failed: {e}")))
}

/// Reverts the last applied migration; returns its version.
///
/// # Errors
/// `StorageError::Other` describing the failure.
pub fn migrate_down(conn: &mut PgConnection) -> Result<String, StorageError> {
    conn.revert_last_migration(MIGRATIONS)
        .map(|v| v.to_string())
        .map_err(|e| StorageError::Other(format!("migration revert failed: {e}")))
}

/// Every known migration with whether it is applied.
///
/// # Errors
/// `StorageError::Other` when the migration table cannot be read.
pub fn migration_status(conn: &mut PgConnection) -> Result<Vec<(String, bool)>, StorageError> {
    let applied = conn.applied_migrations().map_err(|e| StorageError::Other(e.to_string()))?;
    let applied: Vec<String> = applied.iter().map(ToString::to_string).collect();
    let all = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map_err(|e| StorageError::Other(e.to_string()))?;
    Ok(all
        .iter()
        .map(|m| {
            let name = m.name().version().to_string();
            let done = applied.contains(&name);
            (m.name().to_string(), done)
        })
        .collect())
}

/// Splits `postgres://…/dbname?x` into the maintenance URL (database `postgres`) and the database name.
fn split_database_url(url: &str) -> Option<(String, String)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let slash = base.rfind('/')?;
    if slash < "postgres://".len() {
        return None;
    }
    let name = base[slash + 1..].to_owned();
    if name.is_empty() {
        return None;
    }
    let mut maintenance = format!("{}/postgres", &base[..slash]);
    if let Some(q) = query {
        maintenance.push('?');
        maintenance.push_str(q);
    }
    Some((maintenance, name))
}

/// Creates the database named in `url` if it does not exist (development convenience).
///
/// # Errors
/// `StorageError::Unavailable` when the server cannot be reached; `Other` for a malformed URL.
pub fn create_database_if_missing(url: &str) -> Result<bool, StorageError> {
    let (maintenance, name) =
        split_database_url(url).ok_or_else(|| StorageError::Other("database.url names no database".into()))?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StorageError::Other("database name may contain only letters, digits and _".into()));
    }
    let mut conn = PgConnection::establish(&maintenance).map_err(|e| StorageError::Unavailable(e.to_string()))?;
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Exists = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<diesel::sql_types::Text, _>(&name)
        .get_result(&mut conn)?;
    if found.exists {
        return Ok(false);
    }
    match conn.batch_execute(&format!("CREATE DATABASE \"{name}\"")) {
        Ok(()) => Ok(true),
        // Another process created it in the meantime.
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) if e.to_string().contains("already exists") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Checks the database answers (readiness).
///
/// # Errors
/// `StorageError` when no connection is available or the query fails.
pub fn ping(conn: &mut PgConnection) -> Result<(), StorageError> {
    conn.batch_execute("SELECT 1").map_err(StorageError::from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn splits_database_urls() {
        let (m, n) = split_database_url("postgres://u@h:5432/payd?sslmode=disable").unwrap();
        assert_eq!(m, "postgres://u@h:5432/postgres?sslmode=disable");
        assert_eq!(n, "payd");
        assert!(split_database_url("postgres://h").is_none());
    }
}
