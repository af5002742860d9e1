//! A process-local cache invalidated by the database: triggers `pg_notify` a channel with the key of
//! what changed when a change commits (whatever code path made it), and one listener thread per cache
//! (its own PostgreSQL connection) drops the entries named (`*`: every entry).
//!
//! The staleness bound is proved, not assumed: the listener sends its own heartbeat `NOTIFY` on the
//! channel every quarter of the bound, and PostgreSQL delivers a channel's notifications in commit
//! order, so receiving the heartbeat sent at `T` proves every change committed before `T` has been
//! applied. An entry is served only while the newest heartbeat received back was sent less than the
//! bound ago; otherwise the caller reads the database. A value loaded while an invalidation arrived
//! is not cached (generation check), and a reconnect clears the cache (notifications may have been
//! missed while disconnected).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use parking_lot::{Mutex, RwLock};

/// Entries kept at most; beyond it the cache starts over (it only ever holds what was found).
const MAX_ENTRIES: usize = 100_000;

/// A cache of `V` by string key, invalidated through a PostgreSQL channel.
pub struct ListenedCache<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for ListenedCache<V> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<V> std::fmt::Debug for ListenedCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenedCache")
            .field("channel", &self.inner.channel)
            .field("bound", &self.inner.bound)
            .finish_non_exhaustive()
    }
}

struct Inner<V> {
    channel: &'static str,
    map: RwLock<HashMap<String, V>>,
    /// Raised by every invalidation applied.
    generation: AtomicU64,
    /// Send time of the newest own heartbeat received back.
    synced_at: Mutex<Option<Instant>>,
    bound: Duration,
}

impl<V: Clone + Send + Sync + 'static> ListenedCache<V> {
    /// Starts the listener thread on `channel` (an identifier: letters, digits, `_`) with its own
    /// connection to `url`. Until its first heartbeat comes back, nothing is served from the cache.
    pub fn start(url: &str, channel: &'static str, bound: Duration) -> Self {
        let inner = Arc::new(Inner {
            channel,
            map: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            synced_at: Mutex::new(None),
            bound,
        });
        let weak = Arc::downgrade(&inner);
        let url = url.to_owned();
        let spawned =
            std::thread::Builder::new().name(format!("payd-{channel}")).spawn(move || listen(&weak, &url, channel));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, channel, "cache listener not started; every read goes to the database");
        }
        Self { inner }
    }

    /// The cached value of `key`, if the cache is provably current.
    pub fn get(&self, key: &str) -> Option<V> {
        if !self.fresh() {
            return None;
        }
        self.inner.map.read().get(key).cloned()
    }

    /// Whether the newest heartbeat received back is younger than the bound.
    pub fn fresh(&self) -> bool {
        self.inner.synced_at.lock().is_some_and(|t| t.elapsed() < self.inner.bound)
    }

    /// The current generation; pass it back to [`ListenedCache::put`] after loading.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Caches a value loaded when the generation was `generation` (dropped if anything was
    /// invalidated since).
    pub fn put(&self, generation: u64, key: String, value: V) {
        let mut map = self.inner.map.write();
        if self.inner.generation.load(Ordering::Acquire) == generation {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, value);
        }
    }
}

impl<V> ListenedCache<V> {
    /// Drops `key` (`*`: every entry) at once, on this instance: the instance that made a change
    /// need not wait for its notification.
    pub fn invalidate(&self, key: &str) {
        self.inner.invalidate(key);
    }
}

impl<V> Inner<V> {
    fn invalidate(&self, payload: &str) {
        let mut map = self.map.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        if payload == "*" {
            map.clear();
        } else {
            map.remove(payload);
        }
    }
}

/// Listens until the cache is dropped; reconnects after failures (clearing the cache, since
/// notifications may have been missed).
fn listen<V>(weak: &Weak<Inner<V>>, url: &str, channel: &str) {
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let mut seq: u64 = 0;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let period = (inner.bound / 4).max(Duration::from_millis(10));
        drop(inner);
        let mut conn = match PgConnection::establish(url) {
            Ok(mut c) => match c.batch_execute(&format!("SET application_name = 'payd-{channel}'; LISTEN {channel}")) {
                Ok(()) => c,
                Err(e) => {
                    tracing::warn!(error = %e, channel, "cache listener: LISTEN failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, channel, "cache listener cannot connect");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Some(inner) = weak.upgrade() {
            inner.invalidate("*");
        }
        let mut pending: HashMap<u64, Instant> = HashMap::new();
        loop {
            std::thread::sleep(period);
            let Some(inner) = weak.upgrade() else { return };
            seq += 1;
            let sent = Instant::now();
            pending.retain(|_, t| t.elapsed() < inner.bound.saturating_mul(4));
            pending.insert(seq, sent);
            // The payload is ours (hex and digits only), so it can go into the statement text.
            if let Err(e) = conn.batch_execute(&format!("NOTIFY {channel}, 'h:{instance}:{seq}'")) {
                tracing::warn!(error = %e, channel, "cache listener lost its connection");
                break;
            }
            for n in conn.notifications_iter() {
                let Ok(n) = n else { continue };
                match n.payload.strip_prefix("h:").and_then(|h| h.split_once(':')) {
                    Some((who, s)) => {
                        if who != instance {
                            continue;
                        }
                        let Some(at) = s.parse::<u64>().ok().and_then(|s| pending.remove(&s)) else { continue };
                        let mut synced = inner.synced_at.lock();
                        if synced.is_none_or(|t| t < at) {
                            *synced = Some(at);
                        }
                    }
                    None => inner.invalidate(&n.payload),
                }
            }
        }
    }
}
