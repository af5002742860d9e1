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

    /// Records one payment attempt's card-data outcome against the per-API-key and per-card failure
    /// counters, atomically (one Lua script, so concurrent attempts are decided one after another):
    /// see [`CardAttempt`]. `card` is `None` when no card has the number. Also returns the API key's
    /// counter after the attempt (declines in its window and the seconds the window has left), so the
    /// caller can record in the database that the key has reached its limit.
    ///
    /// # Errors
    /// `CacheError` when Redis is unavailable.
    pub async fn card_attempt(
        &self,
        api_key: (&str, u32, u64),
        card: Option<(&str, u32, u64)>,
        outcome: AttemptOutcome,
    ) -> Result<(CardAttempt, KeyDeclines), CacheError> {
        let mut conn = self.pool.get().await?;
        let mut inv = CARD_ATTEMPT.prepare_invoke();
        inv.key(self.key(api_key.0));
        let (card_limit, card_window) = match card {
            Some((k, limit, window)) => {
                inv.key(self.key(k));
                (limit, window)
            }
            None => (1, 1),
        };
        inv.arg(card_limit).arg(card_window).arg(api_key.1).arg(api_key.2).arg(outcome.as_str());
        let (verdict, a, b, kn, kttl): (String, i64, i64, i64, i64) = inv.invoke_async(&mut *conn).await?;
        let attempt = match verdict.as_str() {
            "key_blocked" => CardAttempt::KeyBlocked { retry_after: u64::try_from(a).unwrap_or(1).max(1) },
            "locked" => CardAttempt::Locked,
            "failed" => CardAttempt::Failed { failures: u64::try_from(b).unwrap_or(0) },
            "declined" => CardAttempt::Declined,
            _ => CardAttempt::Ok,
        };
        let key = KeyDeclines { count: u64::try_from(kn).unwrap_or(0), ttl_secs: u64::try_from(kttl).unwrap_or(0) };
        Ok((attempt, key))
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

/// What a payment attempt showed about the card data it presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Number, expiry and CVV all match.
    Ok,
    /// The card exists but expiry or CVV is wrong.
    Wrong,
    /// The card is already locked for payments (recorded in the database).
    Locked,
    /// No card has this number.
    Unknown,
}

impl AttemptOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Wrong => "fail",
            Self::Locked => "locked",
            Self::Unknown => "unknown",
        }
    }
}

/// An API key's declined attempts in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDeclines {
    pub count: u64,
    /// Seconds until the window (and a block it holds) ends; 0 when unknown.
    pub ttl_secs: u64,
}

/// The counters' verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardAttempt {
    /// Go on: the data matched and the card is not locked.
    Ok,
    /// The data was wrong; `failures` is the card's count in the window, this one included.
    Failed { failures: u64 },
    /// The card has reached its failure limit: refused whatever the data.
    Locked,
    /// Unknown number (counted against the API key only).
    Declined,
    /// The API key has reached its limit of declined attempts.
    KeyBlocked { retry_after: u64 },
}

/// KEYS: [api key counter, card counter?]; ARGV: [card limit, card window, key limit, key window, outcome].
/// Returns [verdict, retry after, card count, key count, key window seconds left].
/// A card counter that reaches its limit loses its expiry: the lock holds until the holder unlocks it.
static CARD_ATTEMPT: once_cell::sync::Lazy<redis::Script> = once_cell::sync::Lazy::new(|| {
    redis::Script::new(
        r"
local function fail_key()
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
  return n
end
local kn = tonumber(redis.call('GET', KEYS[1]) or '0')
if kn >= tonumber(ARGV[3]) then
  local ttl = redis.call('TTL', KEYS[1])
  return {'key_blocked', ttl, kn, kn, ttl}
end
if ARGV[5] == 'unknown' or #KEYS < 2 then
  kn = fail_key()
  return {'declined', 0, 0, kn, redis.call('TTL', KEYS[1])}
end
local limit = tonumber(ARGV[1])
local cn = tonumber(redis.call('GET', KEYS[2]) or '0')
if cn >= limit or ARGV[5] == 'locked' then
  kn = fail_key()
  return {'locked', 0, cn, kn, redis.call('TTL', KEYS[1])}
end
if ARGV[5] == 'ok' then
  return {'ok', 0, cn, kn, redis.call('TTL', KEYS[1])}
end
kn = fail_key()
cn = redis.call('INCR', KEYS[2])
if cn == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
if cn >= limit then redis.call('PERSIST', KEYS[2]) end
return {'failed', 0, cn, kn, redis.call('TTL', KEYS[1])}
",
    )
});
