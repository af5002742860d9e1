//! Cross-instance freshness of account actors from a feed of committed changes.
//!
//! Without a feed, an account actor's state is trusted for a read only while its last load from the
//! store is younger than the read's bound (`max_age`), so every actor read at least that often
//! reloads once per bound, whether or not anything changed. With a feed, the store itself reports
//! every committed change of an account (its id and new version) in commit order, and the feed's
//! owner reports heartbeats: [`ChangeFeed::synced`] with the instant `T` a heartbeat was sent, once
//! every change committed before `T` has been reported. An actor whose state was loaded after the
//! feed (re)started ([`ChangeFeed::restart`]) then knows, from the feed alone, whether anything
//! committed before `T` is missing from its state: a reported version above its own. So while the
//! newest heartbeat is younger than `max_age`, an actor that is not behind the feed answers from
//! memory, and the read still reflects every commit acknowledged at least `max_age` before it.
//!
//! Changes that do not raise the version (an account's floor or status) are reported as *forced*:
//! the actor must have loaded after the report arrived.
//!
//! Memory: one entry per account reported since it was last pruned. [`ChangeFeed::prune`] keeps
//! only the accounts that still have a live actor (an actor started later loads after the report
//! and needs no entry); past `capacity` the feed restarts (every actor reloads once).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::store::AccountId;

/// What the feed has reported of one account since it was last pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reported {
    /// The newest version reported.
    version: i64,
    /// When the newest change that did not raise the version was reported, if any.
    forced_at: Option<Instant>,
}

#[derive(Debug)]
struct State {
    reported: HashMap<AccountId, Reported>,
    /// Send time of the newest heartbeat: every change committed before it is in `reported`.
    synced_at: Option<Instant>,
    /// Since when `reported` holds every change (the feed's start, restart or last overflow).
    since: Instant,
    /// The last pruning: since then `reported` holds every change of every account, live actor or not.
    pruned_at: Instant,
}

/// The change feed of one instance, shared by its account actors and the listener that fills it.
#[derive(Debug)]
pub struct ChangeFeed {
    state: RwLock<State>,
    capacity: usize,
}

impl ChangeFeed {
    /// A feed keeping at most `capacity` accounts' reports; it vouches for nothing until it is
    /// (re)started and a heartbeat arrives.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: RwLock::new(State {
                reported: HashMap::new(),
                synced_at: None,
                since: Instant::now(),
                pruned_at: Instant::now(),
            }),
            capacity: capacity.max(1),
        }
    }

    /// The listener is (again) subscribed: changes may have been missed before, so nothing loaded
    /// before now is vouched for, and nothing at all until the next heartbeat.
    pub fn restart(&self) {
        let mut s = self.state.write();
        s.reported.clear();
        s.synced_at = None;
        s.since = Instant::now();
    }

    /// `account` committed `version`.
    pub fn changed(&self, account: AccountId, version: i64) {
        self.report(account, Some(version));
    }

    /// `account` changed in a way its version does not show (floor, status): an actor must reload.
    pub fn forced(&self, account: AccountId) {
        self.report(account, None);
    }

    fn report(&self, account: AccountId, version: Option<i64>) {
        let mut s = self.state.write();
        if s.reported.len() >= self.capacity && !s.reported.contains_key(&account) {
            s.reported.clear();
            s.since = Instant::now();
        }
        let r = s.reported.entry(account).or_insert(Reported { version: i64::MIN, forced_at: None });
        match version {
            Some(v) => r.version = r.version.max(v),
            None => r.forced_at = Some(Instant::now()),
        }
    }

    /// Every change committed before `sent` (a heartbeat's send time) has been reported.
    pub fn synced(&self, sent: Instant) {
        let mut s = self.state.write();
        if s.synced_at.is_none_or(|t| t < sent) {
            s.synced_at = Some(sent);
        }
    }

    /// Keeps the reports of the accounts for which `live` holds (those with a running actor).
    pub fn prune(&self, live: impl Fn(AccountId) -> bool) {
        let mut s = self.state.write();
        s.reported.retain(|id, _| live(*id));
        s.pruned_at = Instant::now();
    }

    /// Accounts with a report now.
    pub fn len(&self) -> usize {
        self.state.read().reported.len()
    }

    /// Whether no account has a report.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether an actor of `account` holding `version`, loaded from the store at `loaded_at` (the
    /// instant the load started), reflects every change committed at least `max_age` ago.
    pub fn vouches(&self, account: AccountId, version: i64, loaded_at: Option<Instant>, max_age: Duration) -> bool {
        let Some(loaded_at) = loaded_at else { return false };
        let s = self.state.read();
        if s.synced_at.is_none_or(|t| t.elapsed() >= max_age) || loaded_at < s.since {
            return false;
        }
        s.reported.get(&account).is_none_or(|r| r.version <= version && r.forced_at.is_none_or(|f| loaded_at >= f))
    }

    /// Whether something read from the store at `read_at` (the instant the read started), while
    /// `account` was at `version`, still reflects every change of the account committed at least
    /// `max_age` ago: [`ChangeFeed::vouches`], for data kept outside an actor (an actor-less account's
    /// reports may have been pruned since, so nothing read before the last pruning is vouched for).
    pub fn vouches_read(&self, account: AccountId, version: i64, read_at: Instant, max_age: Duration) -> bool {
        read_at >= self.state.read().pruned_at && self.vouches(account, version, Some(read_at), max_age)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BOUND: Duration = Duration::from_secs(60);

    fn started() -> (ChangeFeed, Instant) {
        let f = ChangeFeed::new(100);
        f.restart();
        let loaded = Instant::now();
        (f, loaded)
    }

    #[test]
    fn nothing_is_vouched_for_without_a_heartbeat_or_before_the_start() {
        let f = ChangeFeed::new(10);
        let early = Instant::now();
        f.restart();
        assert!(!f.vouches(1, 5, Some(Instant::now()), BOUND), "no heartbeat yet");
        f.synced(Instant::now());
        assert!(f.vouches(1, 5, Some(Instant::now()), BOUND));
        assert!(!f.vouches(1, 5, Some(early), BOUND), "loaded before the feed started");
        assert!(!f.vouches(1, 5, None, BOUND), "never loaded");
        // An old heartbeat vouches for nothing.
        assert!(!f.vouches(1, 5, Some(Instant::now()), Duration::ZERO));
        // A restart forgets the heartbeat and everything loaded before it.
        let before = Instant::now();
        f.restart();
        f.synced(Instant::now());
        assert!(!f.vouches(1, 5, Some(before), BOUND));
    }

    #[test]
    fn a_reported_version_above_the_actors_is_not_vouched_for() {
        let (f, loaded) = started();
        f.synced(Instant::now());
        f.changed(1, 6);
        assert!(!f.vouches(1, 5, Some(loaded), BOUND), "behind the feed");
        assert!(f.vouches(1, 6, Some(loaded), BOUND), "caught up (its own commit, observed)");
        assert!(f.vouches(2, 1, Some(loaded), BOUND), "another account is untouched");
        // Reports never lower the version.
        f.changed(1, 3);
        assert!(!f.vouches(1, 5, Some(loaded), BOUND));
    }

    #[test]
    fn a_read_before_a_pruning_is_not_vouched_for() {
        let (f, _) = started();
        f.synced(Instant::now());
        let read = Instant::now();
        assert!(f.vouches_read(1, 3, read, BOUND));
        f.forced(1);
        assert!(!f.vouches_read(1, 3, read, BOUND), "forced after the read");
        // Account 1 has no live actor: pruning forgets its report, and with it every earlier read.
        f.prune(|_| false);
        assert!(!f.vouches_read(1, 3, read, BOUND), "read before the pruning");
        assert!(f.vouches_read(1, 3, Instant::now(), BOUND));
    }

    #[test]
    fn a_forced_change_needs_a_load_after_it() {
        let (f, loaded) = started();
        f.synced(Instant::now());
        f.forced(1);
        assert!(!f.vouches(1, 9, Some(loaded), BOUND));
        assert!(f.vouches(1, 9, Some(Instant::now()), BOUND));
    }

    #[test]
    fn pruning_keeps_live_accounts_and_overflow_starts_over() {
        let (f, loaded) = started();
        f.synced(Instant::now());
        for a in 0..10 {
            f.changed(a, 2);
        }
        f.prune(|a| a % 2 == 0);
        assert_eq!(f.len(), 5);
        assert!(!f.vouches(4, 1, Some(loaded), BOUND), "a live account keeps its report");
        let f = ChangeFeed::new(3);
        f.restart();
        let loaded = Instant::now();
        f.synced(Instant::now());
        for a in 0..3 {
            f.changed(a, 2);
        }
        f.changed(9, 2);
        assert!(f.len() <= 3);
        assert!(!f.vouches(0, 2, Some(loaded), BOUND), "loaded before the overflow");
        assert!(f.vouches(0, 2, Some(Instant::now()), BOUND), "loaded after it");
    }
}
