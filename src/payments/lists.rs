//! The first page of a card's operation list (`GET /api/v1/{transfers,topups,…}?card_id=`), kept in
//! process per card and kind, and served while the account change feed (`ledger::feed`) shows that
//! nothing it lists has changed.
//!
//! What changes such a page, and how each change is seen:
//! * **A successful operation** of the card: its postings raise the card's account version in the
//!   same transaction. An entry is stored under the version read before its query and served only
//!   while the account actor answers that version (the balance read's rule, `ledger.read_staleness_ms`).
//! * **A failed attempt** (no postings, so no version change) and **archiving or restoring** an
//!   operation: the `operations` triggers (migration `2026-12-10-000101_operation_changes`) report its
//!   debit and credit accounts — the accounts of its cards — as changed on the feed, on every
//!   instance; the instance that committed reports them itself before it answers
//!   ([`crate::ledger::LedgerService::changed_here`]). An entry read before such a report is not served.
//!
//! So a page served from here reflects every change committed through this instance before the read
//! (read-your-writes) and every change committed through any instance at least
//! `ledger.read_staleness_ms` before it — the bound of the balance read. It is only used while the feed
//! vouches for the account ([`payd_actors::ChangeFeed::vouches_read`]): with the feed off, its
//! listener down or lagging, or its trigger missing, every list is read from the database.
//!
//! Only the first page of one card's list with no other filter (no cursor, status, window, search or
//! side; archived operations hidden, the default) and `limit` ≤ the depth is served here, to the card's
//! holder or an admin. Memory: at most `cards.operation_list_cache_cards` entries of
//! `cards.operation_list_cache_depth + 1` operations (about 400 bytes each); a full cache starts over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use payd_actors::ChangeFeed;

use crate::payments::Operation;

#[derive(Debug)]
struct Entry {
    /// The account version read before the query.
    version: i64,
    /// When the version was read (before the query).
    read_at: Instant,
    /// Newest first: the database's first page of `depth` (at most `depth + 1` rows).
    rows: Arc<Vec<Operation>>,
}

/// The operation-list cache of one instance.
#[derive(Clone, Debug)]
pub struct OperationLists {
    map: Arc<RwLock<HashMap<(i64, &'static str), Entry>>>,
    depth: i64,
    capacity: usize,
}

impl OperationLists {
    /// A cache of `capacity` (account, kind) pages of `depth` operations (0 = off).
    pub fn new(capacity: usize, depth: i64) -> Self {
        Self { map: Arc::new(RwLock::new(HashMap::new())), depth: depth.max(0), capacity: capacity.max(1) }
    }

    /// The page size to read from the database on a miss when a page of `limit` can be cached.
    pub fn depth_for(&self, limit: i64) -> Option<i64> {
        (self.depth > 0 && limit <= self.depth).then_some(self.depth)
    }

    /// The first `limit + 1` operations of `account`'s list of `kind`, if an entry read at exactly
    /// `version` is cached and `feed` vouches for it (nothing reported for the account since it was read).
    pub fn get(
        &self,
        feed: &ChangeFeed,
        max_age: Duration,
        account: i64,
        kind: &'static str,
        version: i64,
        limit: i64,
    ) -> Option<Vec<Operation>> {
        let rows = {
            let map = self.map.read();
            let e = map.get(&(account, kind)).filter(|e| e.version == version)?;
            if !feed.vouches_read(account, version, e.read_at, max_age) {
                return None;
            }
            Arc::clone(&e.rows)
        };
        let n = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX).min(rows.len());
        Some(rows[..n].to_vec())
    }

    /// Stores the page read (of `depth`) for `account` and `kind`, queried after `version` was read at
    /// `read_at`. An entry read later is kept.
    pub fn put(&self, account: i64, kind: &'static str, version: i64, read_at: Instant, rows: Vec<Operation>) {
        let mut map = self.map.write();
        match map.get(&(account, kind)) {
            Some(e) if e.read_at > read_at => return,
            Some(_) => {}
            None if map.len() >= self.capacity => map.clear(),
            None => {}
        }
        map.insert((account, kind), Entry { version, read_at, rows: Arc::new(rows) });
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BOUND: Duration = Duration::from_secs(60);

    fn op(seq: i64) -> Operation {
        use crate::payments::{OperationEntry, OperationKind, OperationStatus};
        Operation {
            seq,
            entry: OperationEntry {
                id: uuid::Uuid::now_v7(),
                kind: OperationKind::Transfer,
                status: OperationStatus::Success,
                failure_reason: None,
                amount: 1,
                currency: "IDR".into(),
                method: None,
                source_card_id: None,
                dest_card_id: None,
                debit_account_id: crate::ids::AccountId::new(1),
                credit_account_id: crate::ids::AccountId::new(2),
                reverses_id: None,
                initiated_by: None,
                created_at: chrono::Utc::now(),
                merchant_id: None,
                api_key_id: None,
                order_ref: None,
            },
            archived_at: None,
        }
    }

    fn feed() -> ChangeFeed {
        let f = ChangeFeed::new(100);
        f.restart();
        f.synced(Instant::now());
        f
    }

    #[test]
    fn served_at_the_same_version_until_the_feed_reports_a_change() {
        let f = feed();
        let lists = OperationLists::new(10, 20);
        let read = Instant::now();
        lists.put(7, "transfer", 3, read, (0..21).rev().map(op).collect());
        assert_eq!(lists.get(&f, BOUND, 7, "transfer", 3, 5).unwrap().len(), 6);
        assert_eq!(lists.get(&f, BOUND, 7, "transfer", 3, 5).unwrap()[0].seq, 20);
        assert!(lists.get(&f, BOUND, 7, "transfer", 4, 5).is_none(), "another version");
        assert!(lists.get(&f, BOUND, 7, "topup", 3, 5).is_none(), "another kind");
        assert!(lists.get(&f, BOUND, 8, "transfer", 3, 5).is_none(), "another account");
        // A failed attempt or an archive reported after the read: not served any more.
        f.forced(7);
        assert!(lists.get(&f, BOUND, 7, "transfer", 3, 5).is_none());
        // A page read after the report is.
        lists.put(7, "transfer", 3, Instant::now(), vec![op(1)]);
        assert_eq!(lists.get(&f, BOUND, 7, "transfer", 3, 5).unwrap().len(), 1);
    }

    #[test]
    fn an_older_read_does_not_replace_a_newer_one_and_a_stale_feed_serves_nothing() {
        let f = feed();
        let lists = OperationLists::new(10, 20);
        let early = Instant::now();
        let late = Instant::now();
        lists.put(1, "transfer", 5, late, vec![op(2), op(1)]);
        lists.put(1, "transfer", 4, early, vec![op(1)]);
        assert_eq!(lists.get(&f, BOUND, 1, "transfer", 5, 20).unwrap().len(), 2);
        assert!(lists.get(&f, Duration::ZERO, 1, "transfer", 5, 20).is_none(), "heartbeat older than the bound");
        let lists = OperationLists::new(2, 20);
        for a in 0..3 {
            lists.put(a, "transfer", 1, Instant::now(), vec![op(1)]);
        }
        assert_eq!(lists.len(), 1, "a full cache starts over");
        assert_eq!(OperationLists::new(10, 0).depth_for(5), None, "depth 0 is off");
        assert_eq!(OperationLists::new(10, 20).depth_for(21), None);
        assert_eq!(OperationLists::new(10, 20).depth_for(20), Some(20));
    }
}
