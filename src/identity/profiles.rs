//! `/auth/me` profiles cached in process, invalidated by the database: triggers on `users`,
//! `user_roles` and `roles` notify channel `payd_users` when a change commits (whatever code path
//! made it), and the cache's listener drops the profiles they name (`storage::notified`).
//!
//! The bound is `auth.revocation_staleness_ms`: a profile is served from memory only while the
//! listener's own heartbeat `NOTIFY`, sent less than the bound ago, has come back (see
//! `storage::notified` for the proof); otherwise it is read from the database.

use std::time::Duration;

use crate::identity::model::UserView;
use crate::ids::UserId;
use crate::storage::notified::{Listeners, Notified};

const CHANNEL: &str = "payd_users";
/// Profiles kept per instance at most.
const CAPACITY: usize = 100_000;

/// The profile cache of one instance.
#[derive(Clone, Debug)]
pub struct Profiles {
    cache: Notified<UserId, UserView>,
}

impl Profiles {
    /// A cache kept by the instance's listener.
    pub fn start(listeners: &Listeners, bound: Duration) -> Self {
        Self { cache: Notified::start(listeners, CHANNEL, bound, CAPACITY) }
    }

    /// The cached profile of `user`, if the cache is current.
    pub fn get(&self, user: UserId) -> Option<UserView> {
        self.cache.get(&user)
    }

    /// The current generation; pass it back to [`Profiles::put`] after loading.
    pub fn generation(&self) -> u64 {
        self.cache.generation()
    }

    /// Caches a profile loaded when the generation was `generation` (dropped if anything was
    /// invalidated since).
    pub fn put(&self, generation: u64, view: UserView) {
        self.cache.put(generation, view.id, view);
    }
}
