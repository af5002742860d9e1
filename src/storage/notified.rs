//! In-process caches of database rows, invalidated by the database itself: triggers `NOTIFY` a
//! channel with the changed key when a change commits (whatever code path made it), and one listener
//! thread per cache (its own PostgreSQL connection) drops the entries named.
//!
//! The bound. The listener sends its own heartbeat `NOTIFY` on the channel every quarter of the
//! configured bound. PostgreSQL delivers a channel's notifications in commit order, so receiving the
//! heartbeat sent at `T` proves every change committed before `T` has been applied. A cached entry is
//! served only while the newest heartbeat received back was sent less than the bound ago; otherwise
//! (listener reconnecting, database unreachable, an instance too busy to read its notifications) the
//! caller reads the database. So an entry read from a cache reflects every change committed at least
//! the bound before the read. An entry loaded while an invalidation arrived is not cached
//! (generation check), and a writer that changes a row through this instance drops it at once with
//! [`Notified::invalidate`] (read-your-writes on that instance).
//!
//! Payloads: a key (`FromStr`) drops that entry, `*` (or anything that does not parse) drops them
//! all; `h:<instance>:<seq>` is a heartbeat.

use std::collections::HashMap;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use parking_lot::{Mutex, RwLock};

/// One cache: keys `K` (parsed from the channel's payloads) to rows `V`.
pub struct Notified<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Notified<K, V> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<K, V> std::fmt::Debug for Notified<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notified")
            .field("channel", &self.inner.channel)
            .field("bound", &self.inner.bound)
            .finish_non_exhaustive()
    }
}

struct Inner<K, V> {
    map: RwLock<HashMap<K, V>>,
    /// Raised by every invalidation applied.
    generation: AtomicU64,
    /// Send time of the newest own heartbeat received back.
    synced_at: Mutex<Option<Instant>>,
    bound: Duration,
    /// At most this many entries; a full cache starts over.
    capacity: usize,
    channel: &'static str,
}

impl<K, V> Notified<K, V>
where
    K: Eq + Hash + FromStr + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts the listener thread (its own PostgreSQL connection to `url`) on `channel`, which must be
    /// a plain SQL identifier (it is written into `LISTEN` and `NOTIFY`).
    pub fn start(url: &str, channel: &'static str, bound: Duration, capacity: usize) -> Self {
        let inner = Arc::new(Inner {
            map: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            synced_at: Mutex::new(None),
            bound,
            capacity: capacity.max(1),
            channel,
        });
        let weak = Arc::downgrade(&inner);
        let url = url.to_owned();
        let spawned =
            std::thread::Builder::new().name(format!("payd-{channel}")).spawn(move || listen(&weak, &url, channel));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, channel, "cache listener not started; rows are read from the database");
        }
        Self { inner }
    }

    /// The cached row under `key`, if the cache is current.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.is_current() {
            return None;
        }
        self.inner.map.read().get(key).cloned()
    }

    /// Whether the newest heartbeat received back was sent less than the bound ago.
    pub fn is_current(&self) -> bool {
        self.inner.synced_at.lock().is_some_and(|t| t.elapsed() < self.inner.bound)
    }

    /// The current generation; read it before loading a row and pass it to [`Notified::put`].
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Caches a row loaded when the generation was `generation` (dropped if anything was invalidated
    /// since).
    pub fn put(&self, generation: u64, key: K, value: V) {
        let mut map = self.inner.map.write();
        if self.inner.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if map.len() >= self.inner.capacity && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, value);
    }

    /// Drops `key` at once (a change made through this instance, before its notification arrives).
    pub fn invalidate(&self, key: &K) {
        let mut map = self.inner.map.write();
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(key);
    }

    /// Drops every entry at once (a change made through this instance that touches many keys).
    pub fn invalidate_all(&self) {
        self.inner.apply("*");
    }
}

impl<K: Eq + Hash + FromStr, V> Inner<K, V> {
    fn apply(&self, payload: &str) {
        let mut map = self.map.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        match payload.parse::<K>() {
            Ok(key) if payload != "*" => {
                map.remove(&key);
            }
            _ => map.clear(),
        }
    }

    fn heartbeat_received(&self, sent: Instant) {
        let mut synced = self.synced_at.lock();
        if synced.is_none_or(|t| t < sent) {
            *synced = Some(sent);
        }
    }
}

/// Listens until the cache is dropped; reconnects after failures (clearing the cache, since
/// notifications may have been missed).
fn listen<K: Eq + Hash + FromStr, V>(weak: &Weak<Inner<K, V>>, url: &str, channel: &str) {
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let mut seq: u64 = 0;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let period = (inner.bound / 4).max(Duration::from_millis(10));
        drop(inner);
        let setup = format!("SET application_name = 'payd-{channel}'; LISTEN {channel}");
        let mut conn = match PgConnection::establish(url) {
            Ok(mut c) => match c.batch_execute(&setup) {
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
            inner.apply("*");
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
                        if let Some(at) = s.parse::<u64>().ok().and_then(|s| pending.remove(&s)) {
                            inner.heartbeat_received(at);
                        }
                    }
                    None => inner.apply(&n.payload),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cache(capacity: usize) -> Notified<i64, String> {
        Notified {
            inner: Arc::new(Inner {
                map: RwLock::new(HashMap::new()),
                generation: AtomicU64::new(0),
                synced_at: Mutex::new(Some(Instant::now())),
                bound: Duration::from_secs(60),
                capacity,
                channel: "test",
            }),
        }
    }

    #[test]
    fn a_load_overtaken_by_an_invalidation_is_not_cached() {
        let c = cache(10);
        let g = c.generation();
        c.inner.apply("7");
        c.put(g, 7, "old".into());
        assert_eq!(c.get(&7), None);
        let g = c.generation();
        c.put(g, 7, "new".into());
        assert_eq!(c.get(&7).as_deref(), Some("new"));
    }

    #[test]
    fn payloads_drop_one_key_or_everything() {
        let c = cache(10);
        for k in [1, 2, 3] {
            c.put(c.generation(), k, k.to_string());
        }
        c.inner.apply("2");
        assert_eq!((c.get(&1).is_some(), c.get(&2).is_some(), c.get(&3).is_some()), (true, false, true));
        c.inner.apply("*");
        assert_eq!((c.get(&1), c.get(&3)), (None, None));
        // String keys parse anything, `*` included: it still drops everything.
        let s: Notified<String, i64> = Notified {
            inner: Arc::new(Inner {
                map: RwLock::new(HashMap::new()),
                generation: AtomicU64::new(0),
                synced_at: Mutex::new(Some(Instant::now())),
                bound: Duration::from_secs(60),
                capacity: 10,
                channel: "test",
            }),
        };
        s.put(s.generation(), "k1".to_owned(), 1);
        s.invalidate_all();
        assert_eq!(s.get("k1"), None);
        c.put(c.generation(), 4, "4".into());
        c.invalidate(&4);
        assert_eq!(c.get(&4), None);
    }

    #[test]
    fn nothing_is_served_without_a_recent_heartbeat() {
        let c = cache(10);
        c.put(c.generation(), 1, "1".into());
        assert!(c.get(&1).is_some());
        *c.inner.synced_at.lock() = Some(Instant::now().checked_sub(Duration::from_secs(61)).unwrap());
        assert_eq!(c.get(&1), None);
        *c.inner.synced_at.lock() = None;
        assert_eq!(c.get(&1), None);
        c.inner.heartbeat_received(Instant::now());
        assert!(c.get(&1).is_some());
    }

    #[test]
    fn a_full_cache_starts_over() {
        let c = cache(2);
        c.put(c.generation(), 1, "1".into());
        c.put(c.generation(), 2, "2".into());
        c.put(c.generation(), 2, "2b".into());
        assert_eq!(c.get(&1).as_deref(), Some("1"));
        c.put(c.generation(), 3, "3".into());
        assert_eq!((c.get(&1), c.get(&2), c.get(&3).as_deref()), (None, None, Some("3")));
    }
}
