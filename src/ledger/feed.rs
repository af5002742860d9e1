//! The account change feed of one instance (`payd_actors::feed`), filled from the database: a trigger
//! on `accounts` notifies channel `accounts_changed` when an update commits (migration
//! `2026-12-09-000101_account_changes`), and the instance's listener (`storage::notified::Listeners`)
//! reports each change to the feed, with its heartbeats.
//!
//! So an account actor's state is trusted for a read while the feed is current (its newest heartbeat
//! younger than `ledger.read_staleness_ms`) and shows nothing newer for that account, instead of being
//! reloaded from the database once per bound; a read still reflects every commit acknowledged on any
//! instance at least the bound before it. When the listener is down or lagging, reads fall back to
//! the per-actor rule (reload when the last load is older than the bound).
//!
//! Payloads: comma-separated `<account id>:<version>` (the version committed) or `<account id>:*` (a
//! change the version does not show: floor, status); anything else restarts the feed (every actor
//! reloads once).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use payd_actors::{AccountsHandle, ChangeFeed};

use crate::storage::notified::{Listeners, Subscriber};

/// The channel the `accounts` trigger notifies.
pub const CHANNEL: &str = "accounts_changed";
/// Accounts with a report at most (beyond it the feed restarts); reports are pruned to the live
/// actors once the feed holds more than `PRUNE_ABOVE`.
const CAPACITY: usize = 1_000_000;
const PRUNE_ABOVE: usize = 4_096;

/// The feed and what its pruning needs; subscribed to the listener while it lives.
pub struct AccountFeed {
    feed: Arc<ChangeFeed>,
    accounts: parking_lot::RwLock<Option<AccountsHandle>>,
    bound: Duration,
    /// Reports left by the last pruning.
    pruned_to: AtomicUsize,
}

impl std::fmt::Debug for AccountFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountFeed").field("bound", &self.bound).field("reported", &self.feed.len()).finish()
    }
}

impl AccountFeed {
    /// Subscribes to `listeners`; the feed vouches for nothing until the `LISTEN` is in effect and
    /// the first heartbeat after it is back.
    pub fn start(listeners: &Listeners, bound: Duration) -> Arc<Self> {
        let me = Arc::new(Self {
            feed: Arc::new(ChangeFeed::new(CAPACITY)),
            accounts: parking_lot::RwLock::new(None),
            bound,
            pruned_to: AtomicUsize::new(0),
        });
        listeners.subscribe(CHANNEL, &me);
        me
    }

    /// The feed, for the account actors' configuration.
    pub fn feed(&self) -> Arc<ChangeFeed> {
        Arc::clone(&self.feed)
    }

    /// The account actors whose reports are kept when the feed is pruned.
    pub fn attach(&self, accounts: AccountsHandle) {
        *self.accounts.write() = Some(accounts);
    }
}

/// Whether the trigger `name` on `table` is installed: `accounts_changed` (migration
/// `2026-12-09-000101_account_changes`), `operations_inserted` / `operations_updated` (migration
/// `2026-12-10-000101_operation_changes`).
///
/// # Errors
/// A storage error.
pub fn trigger_installed(
    conn: &mut diesel::PgConnection,
    table: &str,
    name: &str,
) -> Result<bool, crate::storage::StorageError> {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let f: Found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = $1 \
         AND tgrelid = to_regclass($2) AND NOT tgisinternal) AS found",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .bind::<diesel::sql_types::Text, _>(table)
    .get_result(conn)?;
    Ok(f.found)
}

/// Applies one notification's payload to `feed`; `false` when it does not parse.
fn apply(feed: &ChangeFeed, payload: &str) -> bool {
    let mut ok = true;
    for item in payload.split(',') {
        let parsed = item.split_once(':').and_then(|(id, v)| {
            let id = id.trim().parse::<i64>().ok()?;
            match v.trim() {
                "*" => Some((id, None)),
                v => v.parse::<i64>().ok().map(|v| (id, Some(v))),
            }
        });
        match parsed {
            Some((id, Some(version))) => feed.changed(id, version),
            Some((id, None)) => feed.forced(id),
            None => ok = false,
        }
    }
    ok
}

impl Subscriber for AccountFeed {
    fn bound(&self) -> Duration {
        self.bound
    }

    fn subscribed(&self) {
        self.feed.restart();
    }

    fn notified(&self, payload: &str) {
        if !apply(&self.feed, payload) {
            tracing::warn!(channel = CHANNEL, "unreadable account change notification; the feed restarts");
            self.feed.restart();
        }
    }

    fn synced(&self, sent: Instant) {
        self.feed.synced(sent);
    }

    fn tick(&self) {
        // Pruned when the reports have doubled since the last pruning (and past `PRUNE_ABOVE`), so a
        // feed whose reports are mostly live actors is not rescanned every period.
        let len = self.feed.len();
        if len > PRUNE_ABOVE.max(self.pruned_to.load(Ordering::Relaxed).saturating_mul(2)) {
            if let Some(accounts) = self.accounts.read().as_ref() {
                self.feed.prune(|id| accounts.live_addr(id).is_some());
                self.pruned_to.store(self.feed.len(), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payloads_report_versions_and_forced_changes() {
        let feed = ChangeFeed::new(100);
        feed.restart();
        let loaded = Instant::now();
        feed.synced(Instant::now());
        let bound = Duration::from_secs(60);
        assert!(apply(&feed, "7:3,8:*"));
        assert!(!feed.vouches(7, 2, Some(loaded), bound));
        assert!(feed.vouches(7, 3, Some(loaded), bound));
        assert!(!feed.vouches(8, 100, Some(loaded), bound), "forced after the load");
        assert!(feed.vouches(9, 1, Some(loaded), bound));
        assert!(!apply(&feed, "h"));
        assert!(!apply(&feed, "7:x"));
        assert!(!apply(&feed, ""));
    }
}
