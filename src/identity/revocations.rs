//! Session revocation known in process: every instance keeps the set of revoked sessions in memory,
//! fed by a Redis pub/sub channel, so authenticating a request needs no Redis round trip.
//!
//! The bound. Each instance publishes a heartbeat on the channel every quarter of
//! `auth.revocation_staleness_ms` and notes when it sent it. Redis delivers one channel's messages
//! to a subscriber in publish order, so when an instance receives its own heartbeat sent at `T`, it
//! has received every revocation published before `T`. The in-memory answer "not revoked" is trusted
//! only while the last heartbeat received back was sent less than the bound ago; otherwise (Redis
//! unreachable, subscriber reconnecting, an overloaded instance) the request falls back to the Redis
//! flag, as before. A revocation is published before the revoking request is answered, so: once
//! logout, a password change or an admin revocation has been answered, the session is refused on
//! every instance at most `auth.revocation_staleness_ms` later (at once on the instance that revoked).
//!
//! Revocations are also kept in a Redis sorted set (member: session, score: expiry), read after
//! every (re)subscription, so an instance that starts or reconnects knows the earlier ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bb8_redis::redis::{self, AsyncCommands};
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::cache::{Cache, CacheError};

/// Channel and sorted set, under the configured prefix.
const CHANNEL: &str = "sess:events";
const REVOKED_SET: &str = "sess:revoked:set";

/// The in-process revocation list of one instance.
#[derive(Clone)]
pub struct Revocations {
    inner: Arc<Inner>,
}

struct Inner {
    /// Revoked sessions and when their access tokens have all expired.
    revoked: RwLock<HashMap<Uuid, Instant>>,
    /// Send time of the newest own heartbeat received back.
    synced_at: Mutex<Option<Instant>>,
    /// Own heartbeats in flight: sequence number → send time.
    pending: Mutex<HashMap<u64, Instant>>,
    next_seq: AtomicU64,
    instance: Uuid,
    bound: Duration,
    /// How long a revocation must be remembered (an access token's lifetime and some slack).
    keep: Duration,
    cache: Cache,
    url: String,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").field("bound", &self.inner.bound).finish_non_exhaustive()
    }
}

/// What the in-process list can say about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Revoked,
    /// Not revoked, as of less than the bound ago.
    Valid,
    /// The list is not known to be current: ask Redis.
    Unknown,
}

impl Revocations {
    /// Starts the subscriber and heartbeat tasks on the current runtime.
    pub fn start(cache: Cache, url: &str, bound: Duration, keep: Duration) -> Self {
        let this = Self {
            inner: Arc::new(Inner {
                revoked: RwLock::new(HashMap::new()),
                synced_at: Mutex::new(None),
                pending: Mutex::new(HashMap::new()),
                next_seq: AtomicU64::new(1),
                instance: Uuid::new_v4(),
                bound,
                keep,
                cache,
                url: url.to_owned(),
            }),
        };
        let weak = Arc::downgrade(&this.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = subscribe(&inner).await {
                    tracing::warn!(error = %e, "session revocation subscriber: reconnecting");
                }
                drop(inner);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let weak = Arc::downgrade(&this.inner);
        let period = (bound / 4).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.heartbeat().await;
                inner.sweep();
            }
        });
        this
    }

    /// What the in-process list knows about `session`.
    pub fn known(&self, session: &Uuid) -> Known {
        if self.inner.revoked.read().contains_key(session) {
            return Known::Revoked;
        }
        let fresh = self.inner.synced_at.lock().is_some_and(|t| t.elapsed() < self.inner.bound);
        if fresh {
            Known::Valid
        } else {
            Known::Unknown
        }
    }

    /// Records revoked sessions: in Redis (sorted set), on the channel for every instance, and in
    /// this instance's list at once.
    ///
    /// # Errors
    /// `CacheError` when Redis is unavailable.
    pub async fn revoke(&self, sessions: &[Uuid]) -> Result<(), CacheError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let until = Instant::now() + inner.keep;
        {
            let mut map = inner.revoked.write();
            for s in sessions {
                map.insert(*s, until);
            }
        }
        let now = chrono::Utc::now().timestamp();
        let expiry = now.saturating_add(i64::try_from(inner.keep.as_secs()).unwrap_or(i64::MAX));
        let set = inner.cache.prefixed(REVOKED_SET);
        let channel = inner.cache.prefixed(CHANNEL);
        let mut pipe = redis::pipe();
        pipe.cmd("ZREMRANGEBYSCORE").arg(&set).arg("-inf").arg(now).ignore();
        for s in sessions {
            pipe.cmd("ZADD").arg(&set).arg(expiry).arg(s.to_string()).ignore();
            pipe.cmd("PUBLISH").arg(&channel).arg(format!("r:{s}")).ignore();
        }
        pipe.cmd("EXPIRE").arg(&set).arg(inner.keep.as_secs().max(1)).ignore();
        let mut conn = inner.cache.connection().await?;
        let _: () = pipe.query_async(&mut *conn).await?;
        Ok(())
    }
}

impl Inner {
    fn insert(&self, session: Uuid) {
        self.revoked.write().insert(session, Instant::now() + self.keep);
    }

    fn handle(&self, payload: &str) {
        if let Some(s) = payload.strip_prefix("r:") {
            if let Ok(session) = s.parse::<Uuid>() {
                self.insert(session);
            }
        } else if let Some(hb) = payload.strip_prefix("h:") {
            let Some((instance, seq)) = hb.split_once(':') else { return };
            if instance != self.instance.to_string() {
                return;
            }
            let Ok(seq) = seq.parse::<u64>() else { return };
            let Some(sent) = self.pending.lock().remove(&seq) else { return };
            let mut synced = self.synced_at.lock();
            if synced.is_none_or(|t| t < sent) {
                *synced = Some(sent);
            }
        }
    }

    async fn heartbeat(&self) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        {
            let mut pending = self.pending.lock();
            // Heartbeats never answered (lost while reconnecting) are dropped after a while.
            pending.retain(|_, t| t.elapsed() < self.bound.saturating_mul(4));
            pending.insert(seq, sent);
        }
        let msg = format!("h:{}:{seq}", self.instance);
        let published = async {
            let mut conn = self.cache.connection().await?;
            let _: i64 = conn.publish(self.cache.prefixed(CHANNEL), msg).await?;
            Ok::<_, CacheError>(())
        }
        .await;
        if let Err(e) = published {
            tracing::debug!(error = %e, "session revocation heartbeat not published");
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        self.revoked.write().retain(|_, until| *until > now);
    }
}

/// Subscribes, loads the revocations recorded so far, then applies the channel until it ends.
async fn subscribe(inner: &Inner) -> Result<(), CacheError> {
    let client = redis::Client::open(inner.url.as_str())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(inner.cache.prefixed(CHANNEL)).await?;
    // Subscribed first, then read: nothing published in between is missed.
    let now = chrono::Utc::now().timestamp();
    let mut conn = inner.cache.connection().await?;
    let known: Vec<String> = conn.zrangebyscore(inner.cache.prefixed(REVOKED_SET), now, "+inf").await?;
    drop(conn);
    for s in known {
        if let Ok(session) = s.parse::<Uuid>() {
            inner.insert(session);
        }
    }
    let mut stream = pubsub.into_on_message();
    while let Some(msg) = stream.next().await {
        if let Ok(payload) = msg.get_payload::<String>() {
            inner.handle(&payload);
        }
    }
    Ok(())
}
