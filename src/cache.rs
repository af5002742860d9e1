//! Redis through bb8-redis: fixed-window counters (rate limits, lockouts) and short-lived flags
//! (revoked sessions). Every key carries the configured prefix. Never used for money.

use bb8_redis::bb8::Pool;
use bb8_redis::redis::{self, AsyncCommands};
use bb8_redis::RedisConnectionManager;

#[derive(Clone)]
pub struct Cache {
    pool: Pool<RedisConnectionManager>,
    prefix: String,
}

/// Redis is unreachable or answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct CacheError(pub String);

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        Self(e.to_string())
    }
}

impl<E: std::fmt::Display> From<bb8_redis::bb8::RunError<E>> for CacheError {
    fn from(e: bb8_redis::bb8::RunError<E>) -> Self {
        match e {
            bb8_redis::bb8::RunError::User(inner) => Self(inner.to_string()),
            bb8_redis::bb8::RunError::TimedOut => Self("timed out waiting for a connection".into()),
        }
    }
}

impl Cache {
    /// Builds the pool without connecting (connections open on first use).
    ///
    /// # Errors
    /// `CacheError` for a malformed URL.
    pub fn new(url: &str, size: u32, prefix: &str) -> Result<Self, CacheError> {
        let manager = RedisConnectionManager::new(url)?;
        let pool = Pool::builder()
            .max_size(size)
            .connection_timeout(std::time::Duration::from_secs(3))
            .build_unchecked(manager);
        Ok(Self { pool, prefix: prefix.to_owned() })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// `key` under the configured prefix.
    pub fn prefixed(&self, key: &str) -> String {
        self.key(key)
    }

    /// A pooled connection, for callers that pipeline their own commands.
    ///
    /// # Errors
    /// `CacheError` when Redis is unavailable.
    pub async fn connection(&self) -> Result<bb8_redis::bb8::PooledConnection<'_, RedisConnectionManager>, CacheError> {
        Ok(self.pool.get().await?)
    }

    /// Increments a fixed-window counter; returns (count, seconds until the window ends).
    ///
    /// # Errors
    /// `CacheError` when Redis is unavailable.
    pub async fn hit(&self, key: &str, window_secs: u64) -> Result<(u64, u64), CacheError> {
        let key = self.key(key);
        let mut conn = self.pool.get().await?;
        let (count, ttl): (u64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(window_secs)
            .arg("NX")
            .ignore()
            .cmd("TTL")
            .arg(&key)
            .query_async(&mut *conn)
            .await?;
        Ok((count, u64::try_from(ttl).unwrap_or(window_secs)))
    }

    /// Reads a counter; returns (count, seconds to live).
    ///
    /// # Errors
    /// `CacheError` when Redis is unavailable.
    pub async fn count(&self, key: &str) -> Result<(u64, u64), CacheError> {
        let key = self.key(key);
        let mut conn = self.pool.get().await?;
        let (count, ttl): (Option<u64>, i64) =
            redis::pipe().cmd("GET").arg(&key).cmd("TTL").arg(&key).query_async(&mut *conn).await?;
        Ok((count.unwrap_or(0), u64::try_from(ttl).unwrap_or(0)))
    }

    /// Sets a flag that expires by itself.
    ///
    /// # Errors
    /// `CacheError` when Redis is unavailable.
    pub async fn set_flag(&self, key: &str, ttl_secs: u64) -> Result<(), CacheError> {
        let mut conn = self.pool.get().await?;
        let _: () = conn.set_ex(self.key(key), 1u8, ttl_secs.max(1)).await?;
        Ok(())
    }

    /// Sets many flags at once.
    ///
    /// # Errors
    /// `CacheError` when Redis is unavailable.
    pub async fn set_flags(&self, keys: &[String], ttl_secs: u64) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get().await?;
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("SET").arg(self.key(k)).arg(1u8).arg("EX").arg(ttl_secs.max(1)).ignore();
        }
        let _: () = pipe.query_async(&mut *conn).await?;
        Ok(())
    }

    /// Whether a flag is set.
    ///
    /// # Errors
    /// `CacheError` when Redis is unavailable.
    pub async fn has_flag(&self, key: &str) -> Result<bool, CacheError> {
        let mut conn = self.pool.get().await?;
        Ok(conn.exists(self.key(key)).await?)
    }

    /// Deletes a key.
    ///
    /// # Errors
    /// `CacheError` when Redis is unavailable.
    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut conn = self.pool.get().await?;
        let _: () = conn.del(self.key(key)).await?;
        Ok(())
    }

    /// Readiness probe.
    ///
    /// # Errors
    /// `CacheError` when Redis does not answer.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.pool.get().await?;
        let _: String = redis::cmd("PING").query_async(&mut *conn).await?;
        Ok(())
    }
}
