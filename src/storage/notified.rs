//! In-process caches of database rows, invalidated by the database itself: triggers `NOTIFY` a
//! channel with the changed key when a change commits (whatever code path made it), and the
//! instance's listener ([`Listeners`]: one thread, one PostgreSQL connection for every channel)
//! drops the entries named.
//!
//! The bound. The listener sends its own heartbeat `NOTIFY` every quarter of the smallest configured
//! bound. PostgreSQL delivers notifications in commit order, so receiving the heartbeat sent at `T`
//! proves every change committed before `T` has been applied. A cached entry is
//! served only while the newest heartbeat received back was sent less than the bound ago; otherwise
//! (listener reconnecting, database unreachable, an instance too busy to read its notifications) the
//! caller reads the database. So an entry read from a cache reflects every change committed at least
//! the bound before the read. An entry loaded while an invalidation arrived is not cached
//! (generation check), and a writer that changes a row through this instance drops it at once with
//! [`Notified::invalidate`] (read-your-writes on that instance).
//!
//! Payloads: a key (`FromStr`) drops that entry, `*` (or anything that does not parse) drops them
//! all.

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
    /// A cache of `channel`'s rows (a plain SQL identifier: it is written into `LISTEN`), kept by
    /// `listeners`.
    pub fn start(listeners: &Listeners, channel: &'static str, bound: Duration, capacity: usize) -> Self {
        let inner = Arc::new(Inner {
            map: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            synced_at: Mutex::new(None),
            bound,
            capacity: capacity.max(1),
            channel,
        });
        listeners.subscribe(channel, &inner);
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

impl<K: Eq + Hash + FromStr + Send + Sync + 'static, V: Send + Sync + 'static> Subscriber for Inner<K, V> {
    fn bound(&self) -> Duration {
        self.bound
    }
    fn subscribed(&self) {
        self.apply("*");
    }
    fn notified(&self, payload: &str) {
        self.apply(payload);
    }
    fn synced(&self, sent: Instant) {
        self.heartbeat_received(sent);
    }
}

/// What a listener thread reports to: the channel's notifications in commit order, and its own
/// heartbeats coming back.
pub trait Subscriber: Send + Sync + 'static {
    /// The staleness bound; a heartbeat goes out every quarter of it.
    fn bound(&self) -> Duration;
    /// `LISTEN` is (again) in effect: anything before may have been missed.
    fn subscribed(&self);
    /// One notification's payload (heartbeats are not passed on).
    fn notified(&self, payload: &str);
    /// The heartbeat sent at `sent` came back: every change committed before it has been notified.
    fn synced(&self, sent: Instant);
    /// Called once a heartbeat period, after the notifications received were passed on.
    fn tick(&self) {}
}

/// The notification listener of one instance: one thread and one PostgreSQL connection for every
/// channel the instance listens to (the caches, the account change feed), so an instance holds one
/// connection for all of them (docs/operations.md, "PostgreSQL connection budget").
///
/// Every period (a quarter of the smallest bound among the subscribers) it sends a heartbeat on its
/// own channel, `payd_listeners`, and passes on what arrived. PostgreSQL delivers notifications in
/// commit order whatever their channel, so the heartbeat sent at `T` coming back proves every change
/// committed before `T` has been passed on, on every channel: each subscriber listening since before
/// `T` is told [`Subscriber::synced`]. It reconnects after failures, telling each subscriber
/// [`Subscriber::subscribed`] once its `LISTEN` is in effect again. The thread stops when every
/// handle is dropped.
#[derive(Clone)]
pub struct Listeners {
    hub: Arc<Hub>,
    url: Arc<str>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners").field("subscribers", &self.hub.subs.lock().len()).finish()
    }
}

struct Hub {
    subs: Mutex<Vec<Sub>>,
}

struct Sub {
    channel: &'static str,
    target: Weak<dyn Subscriber>,
    /// The heartbeat sequence number current when its `LISTEN` took effect (`None`: not yet, on this
    /// connection); only later heartbeats are reported to it.
    listening_from: Option<u64>,
}

/// The heartbeat channel of [`Listeners`].
const HEARTBEATS: &str = "payd_listeners";

impl Listeners {
    /// A listener for the database at `url`; [`Listeners::run`] starts it once the instance's
    /// subscribers are in (so their first `LISTEN`s go out together).
    pub fn new(url: &str) -> Self {
        Self { hub: Arc::new(Hub { subs: Mutex::new(Vec::new()) }), url: Arc::from(url) }
    }

    /// Starts the listener thread on its own connection; subscribers added later are listened for
    /// from its next period on.
    pub fn run(&self) {
        let weak = Arc::downgrade(&self.hub);
        let url = Arc::clone(&self.url);
        let spawned = std::thread::Builder::new().name("payd-listen".into()).spawn(move || listen(&weak, &url));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "listener not started; cached rows are read from the database");
        }
    }

    /// Passes `channel`'s notifications (a plain SQL identifier: it is written into `LISTEN`) to
    /// `subscriber` while it lives; it is told [`Subscriber::subscribed`] once the `LISTEN` is in
    /// effect.
    pub fn subscribe<S: Subscriber>(&self, channel: &'static str, subscriber: &Arc<S>) {
        let weak: Weak<S> = Arc::downgrade(subscriber);
        let target: Weak<dyn Subscriber> = weak;
        self.hub.subs.lock().push(Sub { channel, target, listening_from: None });
    }
}

/// Listens until every [`Listeners`] handle is dropped; reconnects after failures.
fn listen(weak: &Weak<Hub>, url: &str) {
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let mut seq: u64 = 0;
    loop {
        if weak.strong_count() == 0 {
            return;
        }
        let setup = format!("SET application_name = 'payd-listen'; LISTEN {HEARTBEATS}");
        let mut conn = match PgConnection::establish(url) {
            Ok(mut c) => match c.batch_execute(&setup) {
                Ok(()) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "listener: LISTEN failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "listener cannot connect");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Some(hub) = weak.upgrade() {
            for s in hub.subs.lock().iter_mut() {
                s.listening_from = None;
            }
        }
        let mut pending: HashMap<u64, Instant> = HashMap::new();
        if let Err(e) = serve(weak, &mut conn, &instance, &mut seq, &mut pending) {
            tracing::warn!(error = %e, "listener lost its connection");
        } else {
            return;
        }
    }
}

/// One connection's life: `Ok` when the hub is gone, `Err` when the connection failed.
fn serve(
    weak: &Weak<Hub>,
    conn: &mut PgConnection,
    instance: &str,
    seq: &mut u64,
    pending: &mut HashMap<u64, Instant>,
) -> Result<(), diesel::result::Error> {
    loop {
        let Some(hub) = weak.upgrade() else { return Ok(()) };
        // Subscribers: forget the dropped ones, start listening for the new ones.
        let (period, fresh) = {
            let mut subs = hub.subs.lock();
            subs.retain(|s| s.target.strong_count() > 0);
            let period = subs
                .iter()
                .filter_map(|s| s.target.upgrade().map(|t| t.bound() / 4))
                .min()
                .unwrap_or(Duration::from_millis(250))
                .max(Duration::from_millis(10));
            let mut fresh = Vec::new();
            for s in subs.iter_mut().filter(|s| s.listening_from.is_none()) {
                conn.batch_execute(&format!("LISTEN {}", s.channel))?;
                s.listening_from = Some(*seq);
                fresh.push(s.target.clone());
            }
            (period, fresh)
        };
        for t in fresh.iter().filter_map(Weak::upgrade) {
            t.subscribed();
        }
        drop(hub);
        std::thread::sleep(period);
        let Some(hub) = weak.upgrade() else { return Ok(()) };
        *seq += 1;
        let sent = Instant::now();
        pending.retain(|_, t| t.elapsed() < period.saturating_mul(16));
        pending.insert(*seq, sent);
        // The payload is ours (hex and digits only), so it can go into the statement text.
        conn.batch_execute(&format!("NOTIFY {HEARTBEATS}, 'h:{instance}:{seq}'"))?;
        // Snapshot the subscribers (their callbacks run without the hub's lock held).
        let subs: Vec<(&'static str, Option<u64>, Arc<dyn Subscriber>)> = hub
            .subs
            .lock()
            .iter()
            .filter_map(|s| s.target.upgrade().map(|t| (s.channel, s.listening_from, t)))
            .collect();
        drop(hub);
        for n in conn.notifications_iter() {
            // An error here is the connection's (once it is lost every later read fails too):
            // reconnect rather than read on.
            let n = n?;
            if n.channel == HEARTBEATS {
                let mine = n.payload.strip_prefix("h:").and_then(|h| h.split_once(':'));
                let Some((who, s)) = mine else { continue };
                if who != instance {
                    continue;
                }
                let Some(s) = s.parse::<u64>().ok() else { continue };
                if let Some(at) = pending.remove(&s) {
                    for (_, from, t) in &subs {
                        if from.is_some_and(|f| f < s) {
                            t.synced(at);
                        }
                    }
                }
                continue;
            }
            for (_, _, t) in subs.iter().filter(|(c, from, _)| *c == n.channel && from.is_some()) {
                t.notified(&n.payload);
            }
        }
        for (_, _, t) in &subs {
            t.tick();
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
