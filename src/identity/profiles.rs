//! `/auth/me` profiles cached in process, invalidated by the database: triggers on `users`,
//! `user_roles` and `roles` notify channel `payd_users` when a change commits (whatever code path
//! made it), and one listener thread per instance drops the cached profiles they name.
//!
//! The bound is `auth.revocation_staleness_ms`, proved like the revocation list's: the listener sends
//! its own heartbeat `NOTIFY` on the channel every quarter of the bound, PostgreSQL delivers a
//! channel's notifications in commit order, so receiving the heartbeat sent at `T` proves every change
//! committed before `T` has been applied. A cached profile is served only while the newest heartbeat
//! received back was sent less than the bound ago; otherwise the profile is read from the database.
//! A profile loaded while an invalidation arrived is not cached (generation check).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use parking_lot::{Mutex, RwLock};

use crate::identity::model::UserView;

const CHANNEL: &str = "payd_users";

/// The profile cache of one instance.
#[derive(Clone)]
pub struct Profiles {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Profiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles").field("bound", &self.inner.bound).finish_non_exhaustive()
    }
}

struct Inner {
    map: RwLock<HashMap<i64, UserView>>,
    /// Raised by every invalidation applied.
    generation: AtomicU64,
    /// Send time of the newest own heartbeat received back.
    synced_at: Mutex<Option<Instant>>,
    bound: Duration,
}

impl Profiles {
    /// Starts the listener thread (its own PostgreSQL connection to `url`).
    pub fn start(url: &str, bound: Duration) -> Self {
        let inner = Arc::new(Inner {
            map: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            synced_at: Mutex::new(None),
            bound,
        });
        let weak = Arc::downgrade(&inner);
        let url = url.to_owned();
        let spawned = std::thread::Builder::new().name("payd-profiles".into()).spawn(move || listen(&weak, &url));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "profile cache listener not started; profiles are read from the database");
        }
        Self { inner }
    }

    /// The cached profile of `user`, if the cache is current.
    pub fn get(&self, user: i64) -> Option<UserView> {
        let fresh = self.inner.synced_at.lock().is_some_and(|t| t.elapsed() < self.inner.bound);
        if !fresh {
            return None;
        }
        self.inner.map.read().get(&user).cloned()
    }

    /// The current generation; pass it back to [`Profiles::put`] after loading.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Caches a profile loaded when the generation was `generation` (dropped if anything was
    /// invalidated since).
    pub fn put(&self, generation: u64, view: UserView) {
        let mut map = self.inner.map.write();
        if self.inner.generation.load(Ordering::Acquire) == generation {
            map.insert(view.id, view);
        }
    }
}

impl Inner {
    fn invalidate(&self, payload: &str) {
        let mut map = self.map.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        match payload.parse::<i64>() {
            Ok(id) => {
                map.remove(&id);
            }
            Err(_) => map.clear(),
        }
    }
}

/// Listens until the cache is dropped; reconnects after failures (clearing the cache, since
/// notifications may have been missed).
fn listen(weak: &Weak<Inner>, url: &str) {
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let mut seq: u64 = 0;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let period = (inner.bound / 4).max(Duration::from_millis(10));
        drop(inner);
        let mut conn = match PgConnection::establish(url) {
            Ok(mut c) => match c.batch_execute(&format!("SET application_name = 'payd-profiles'; LISTEN {CHANNEL}")) {
                Ok(()) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "profile cache listener: LISTEN failed");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "profile cache listener cannot connect");
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
            if let Err(e) = conn.batch_execute(&format!("NOTIFY {CHANNEL}, 'h:{instance}:{seq}'")) {
                tracing::warn!(error = %e, "profile cache listener lost its connection");
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
