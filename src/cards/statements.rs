//! The first page of card statements, kept in process per account and validated by the account's
//! committed version as the account actor knows it (the rule of the balance read).
//!
//! A statement is the account's postings, newest first, each with its operation's kind. Postings are
//! append-only and immutable, and every commit that adds a posting to an account raises that
//! account's version in the same transaction (`SET_BALANCES` in `ledger::store`; the offline seeder
//! does the same). Nothing else changes a page: archiving or restoring an operation or a card, a
//! card's status, label or owner do not touch its postings (who may read the page is checked on every
//! request, before this cache, from the card cache). So the newest `depth + 1` postings read after
//! version `v` was committed are an exact first page for every version up to the next posting.
//!
//! An entry is served only when its version equals the one the account actor answers
//! ([`AccountsHandle::read`](payd_actors::AccountsHandle) with `ledger.read_staleness_ms`):
//! * **Read-your-writes on the instance that committed**: the actor observes a commit before the
//!   client is answered, so a page read after a 201 asks for the new version and misses.
//! * **Across instances: `ledger.read_staleness_ms`**: the actor's version reflects every commit
//!   acknowledged on any instance at least that long before the read (it reloads otherwise), so a
//!   page served from here does too.
//!
//! A miss reads the page from the database after the version was read, so it holds at least that
//! version's postings (possibly newer ones, never fewer) and is stored under that version.
//!
//! Memory: at most `cards.statement_cache_accounts` accounts of `cards.statement_cache_depth + 1`
//! lines each (about 100 bytes a line); a full cache starts over. Depth 0 turns the cache off.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::cards::routes::StatementLine;

/// One account's newest lines and the version they were read at (or after).
#[derive(Debug)]
struct Entry {
    version: i64,
    /// Newest first: the database's answer for a page of `depth` lines (at most `depth + 1` rows).
    lines: Arc<Vec<StatementLine>>,
}

/// The statement cache of one instance.
#[derive(Clone, Debug)]
pub struct Statements {
    map: Arc<RwLock<HashMap<i64, Entry>>>,
    depth: i64,
    capacity: usize,
}

impl Statements {
    /// A cache of `capacity` accounts, `depth` lines each (0 = off).
    pub fn new(capacity: usize, depth: i64) -> Self {
        Self { map: Arc::new(RwLock::new(HashMap::new())), depth: depth.max(0), capacity: capacity.max(1) }
    }

    /// The page size to read from the database on a miss when a page of `limit` can be cached, or
    /// `None` when this cache cannot answer the page (a cursor, a window, a limit above the depth).
    pub fn depth_for(&self, limit: i64, first_page_without_window: bool) -> Option<i64> {
        (self.depth > 0 && first_page_without_window && limit <= self.depth).then_some(self.depth)
    }

    /// The first `limit + 1` lines of `account` at exactly `version`, if cached.
    pub fn get(&self, account: i64, version: i64, limit: i64) -> Option<Vec<StatementLine>> {
        let map = self.map.read();
        let entry = map.get(&account).filter(|e| e.version == version)?;
        let n = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX).min(entry.lines.len());
        Some(entry.lines[..n].to_vec())
    }

    /// Stores the lines read (a page of `depth`) for `account` under `version`, the account's version
    /// read before the query. An entry of a newer version is kept.
    pub fn put(&self, account: i64, version: i64, lines: Vec<StatementLine>) {
        let mut map = self.map.write();
        if let Some(e) = map.get(&account) {
            if e.version > version {
                return;
            }
        } else if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(account, Entry { version, lines: Arc::new(lines) });
    }

    /// Accounts cached now.
    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn line(id: i64) -> StatementLine {
        StatementLine {
            posting_id: id,
            operation_id: uuid::Uuid::nil(),
            kind: "topup".into(),
            amount: id,
            balance_after: id,
            created_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        }
    }

    fn ids(v: &[StatementLine]) -> Vec<i64> {
        v.iter().map(|l| l.posting_id).collect()
    }

    #[test]
    fn serves_only_the_version_it_was_read_at() {
        let c = Statements::new(10, 3);
        assert_eq!(c.depth_for(3, true), Some(3));
        assert_eq!(c.depth_for(4, true), None, "a limit above the depth");
        assert_eq!(c.depth_for(2, false), None, "a cursor or a window");
        c.put(1, 5, (1..=4).rev().map(line).collect());
        assert!(c.get(1, 4, 3).is_none());
        assert!(c.get(1, 6, 3).is_none());
        assert_eq!(ids(&c.get(1, 5, 3).unwrap()), vec![4, 3, 2, 1]);
        assert_eq!(ids(&c.get(1, 5, 1).unwrap()), vec![4, 3]);
        // An older version never replaces a newer one.
        c.put(1, 4, vec![line(9)]);
        assert_eq!(ids(&c.get(1, 5, 1).unwrap()), vec![4, 3]);
        // A short history is whole.
        c.put(2, 1, vec![line(7)]);
        assert_eq!(ids(&c.get(2, 1, 3).unwrap()), vec![7]);
    }

    #[test]
    fn bounded_and_off_at_depth_zero() {
        let c = Statements::new(2, 3);
        for a in 0..5 {
            c.put(a, 1, vec![line(a)]);
            assert!(c.len() <= 2);
        }
        assert!(Statements::new(2, 0).depth_for(1, true).is_none());
    }
}
