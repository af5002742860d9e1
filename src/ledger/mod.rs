//! The ledger: wiring of the actor system (account and card actors, coordinator, group-commit
//! writers) to PostgreSQL, the platform's system accounts, and the invariant checks (`verify`).

pub mod feed;
pub mod store;
pub mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use payd_actors::{AccountsHandle, ActorConfig, CardsHandle, Ledger, LedgerWriter, WriterConfig};

use crate::config::Settings;
use crate::payments::methods::METHODS;
use crate::storage::schema::accounts;
use crate::storage::{self, PgPool, StorageError};
pub use store::{NewEvent, NewIdempotency, OpRecord, WithdrawnDelta};

/// Code of the account that receives withdrawn money (money leaving the platform).
pub const WITHDRAWAL_SETTLEMENT: &str = "settlement:withdrawals";

/// Ids of the platform's own accounts.
#[derive(Debug, Clone, Default)]
pub struct SystemAccounts {
    /// Per top-up method: where money entering the platform is drawn from.
    pub funding: HashMap<&'static str, i64>,
    pub withdrawals: i64,
}

impl SystemAccounts {
    /// Creates missing system accounts and returns all their ids.
    ///
    /// # Errors
    /// A storage error.
    pub fn ensure(conn: &mut PgConnection, currency: &str) -> Result<Self, StorageError> {
        let mut wanted: Vec<(String, &str)> = METHODS.iter().map(|m| (format!("funding:{m}"), "funding")).collect();
        wanted.push((WITHDRAWAL_SETTLEMENT.to_owned(), "settlement"));
        for (code, kind) in &wanted {
            diesel::insert_into(accounts::table)
                .values((accounts::kind.eq(kind), accounts::code.eq(code), accounts::currency.eq(currency)))
                .on_conflict(accounts::code)
                .do_nothing()
                .execute(conn)?;
        }
        let rows: Vec<(Option<String>, i64)> =
            accounts::table.filter(accounts::code.is_not_null()).select((accounts::code, accounts::id)).load(conn)?;
        let mut out = Self::default();
        for (code, id) in rows {
            let Some(code) = code else { continue };
            if code == WITHDRAWAL_SETTLEMENT {
                out.withdrawals = id;
            } else if let Some(m) = code.strip_prefix("funding:") {
                if let Some(known) = METHODS.iter().find(|k| **k == m) {
                    out.funding.insert(known, id);
                }
            }
        }
        Ok(out)
    }
}

/// The running ledger: actor handles plus the system accounts.
#[derive(Clone)]
pub struct LedgerService {
    pub ledger: Ledger<OpRecord>,
    pub system: Arc<SystemAccounts>,
    /// Money requests running on this instance, by idempotency key.
    pub inflight: crate::payments::inflight::InFlight,
    /// The account change feed (`ledger.change_feed`), kept alive with the service.
    pub account_feed: Option<Arc<feed::AccountFeed>>,
    /// Whether the feed also reports the operation changes no version shows (failed attempts,
    /// archiving), so cached operation lists may rely on it (`payments::lists`).
    pub operations_on_feed: bool,
}

impl LedgerService {
    /// Starts account/card actors, the coordinator and the writer threads. Must run inside an actix System.
    ///
    /// # Errors
    /// When the system accounts cannot be created.
    pub async fn start(
        settings: &Settings,
        pool: &PgPool,
        listeners: &crate::storage::notified::Listeners,
    ) -> anyhow::Result<Self> {
        let currency = settings.money.currency.clone();
        let system = storage::run(pool, move |conn| SystemAccounts::ensure(conn, &currency)).await?;
        let l = &settings.ledger;
        // The feed trusts silence: without the trigger (a schema not yet migrated) it would vouch for
        // every actor forever, so it is only used when the trigger is there.
        let trigger = if l.change_feed {
            storage::run(pool, |c| feed::trigger_installed(c, "accounts", "accounts_changed")).await?
        } else {
            false
        };
        let operations_on_feed = trigger
            && storage::run(pool, |c| feed::trigger_installed(c, "operations", "operations_inserted")).await?
            && storage::run(pool, |c| feed::trigger_installed(c, "operations", "operations_updated")).await?;
        if l.change_feed && !trigger {
            tracing::warn!(
                "ledger.change_feed is on but the accounts_changed trigger is missing (migrations not applied?); \
                 account reads reload once per ledger.read_staleness_ms instead"
            );
        }
        let account_feed =
            trigger.then(|| feed::AccountFeed::start(listeners, Duration::from_millis(l.read_staleness_ms)));
        let actor_cfg = ActorConfig {
            mailbox_capacity: l.mailbox_capacity,
            ask_timeout: Duration::from_millis(l.ask_timeout_ms),
            idle_timeout: Duration::from_secs(l.idle_timeout_secs),
            feed: account_feed.as_ref().map(|f| f.feed()),
            ..ActorConfig::default()
        };
        let accounts = AccountsHandle::new(l.shards, store::account_loader(pool.clone()), actor_cfg.clone());
        if let Some(f) = &account_feed {
            f.attach(accounts.clone());
        }
        let cards = CardsHandle::new(l.shards, store::card_loader(pool.clone()), actor_cfg);
        let hook: payd_actors::BatchHook = Arc::new(|size, latency| {
            if let Some(m) = crate::metrics::METRICS.as_ref() {
                m.ledger_batch_size
                    .with_label_values(&["pg"])
                    .observe(f64::from(u32::try_from(size).unwrap_or(u32::MAX)));
                m.ledger_commit_seconds.with_label_values(&["pg"]).observe(latency.as_secs_f64());
            }
        });
        let session = store::WriterSession {
            lock_timeout_ms: l.writer_lock_timeout_ms,
            statement_timeout_ms: l.writer_statement_timeout_ms,
        };
        let stores = (0..l.writers)
            .map(|_| store::PgLedgerStore::with_session(settings.database.url.expose(), session))
            .collect();
        let writer = LedgerWriter::start(
            stores,
            WriterConfig {
                max_batch: l.max_batch,
                max_wait: Duration::from_micros(l.max_wait_us),
                queue_capacity: l.queue_capacity,
                on_batch: Some(hook),
                unavailable_retries: l.commit_retries,
                retry_backoff: Duration::from_millis(l.commit_retry_backoff_ms),
            },
        );
        let ledger = Ledger::start(accounts, cards, writer, Duration::from_millis(l.exec_timeout_ms), 65_536);
        Ok(Self {
            ledger,
            system: Arc::new(system),
            inflight: crate::payments::inflight::InFlight::default(),
            account_feed,
            operations_on_feed,
        })
    }

    /// The change feed when it also reports operation changes (for data kept outside the actors).
    pub fn operations_feed(&self) -> Option<Arc<payd_actors::ChangeFeed>> {
        self.account_feed.as_ref().filter(|_| self.operations_on_feed).map(|f| f.feed())
    }

    /// Reports, on this instance's feed and at once, a committed change of `accounts` that no version
    /// shows (a failed attempt recorded, an operation archived or restored): what was read before now
    /// is not served. The `operations` triggers report it to every instance, within the bound.
    pub fn changed_here(&self, accounts: &[i64]) {
        if let Some(f) = &self.account_feed {
            let feed = f.feed();
            for a in accounts {
                feed.forced(*a);
            }
        }
    }

    /// Whether every ledger-writer thread runs and every account and card registry answers (the
    /// ledger part of `/readyz`).
    pub async fn healthy(&self) -> bool {
        let stats = self.ledger.writer().stats();
        let timeout = Duration::from_secs(1);
        stats.threads() > 0
            && stats.alive() == stats.threads()
            && self.ledger.accounts().responsive(timeout).await
            && self.ledger.cards().responsive(timeout).await
    }

    /// Publishes actor and writer gauges.
    pub fn export_gauges(&self) {
        crate::metrics::set_gauge(
            "live_account_actors",
            i64::try_from(self.ledger.accounts().live_actors()).unwrap_or(i64::MAX),
        );
        crate::metrics::set_gauge(
            "live_card_actors",
            i64::try_from(self.ledger.cards().live_actors()).unwrap_or(i64::MAX),
        );
        crate::metrics::set_gauge(
            "ledger_queue_depth",
            i64::try_from(self.ledger.writer().queued()).unwrap_or(i64::MAX),
        );
        let (reservations, asks) = payd_actors::gauges::snapshot();
        crate::metrics::set_gauge("reservations_outstanding", reservations);
        crate::metrics::set_gauge("actor_asks_in_flight", asks);
        let stats = self.ledger.writer().stats();
        crate::metrics::set_gauge("ledger_batches_total", i64::try_from(stats.batches()).unwrap_or(i64::MAX));
        crate::metrics::set_gauge("ledger_entries_total", i64::try_from(stats.entries()).unwrap_or(i64::MAX));
        crate::metrics::set_gauge("ledger_busy_total", i64::try_from(stats.busy()).unwrap_or(i64::MAX));
        crate::metrics::set_gauge("ledger_duplicates_total", i64::try_from(stats.duplicates()).unwrap_or(i64::MAX));
        crate::metrics::set_gauge("ledger_commit_retries_total", i64::try_from(stats.retries()).unwrap_or(i64::MAX));
        crate::metrics::set_gauge("ledger_writer_restarts_total", i64::try_from(stats.restarts()).unwrap_or(i64::MAX));
        crate::metrics::set_gauge("ledger_writers_alive", i64::try_from(stats.alive()).unwrap_or(i64::MAX));
        crate::metrics::set_gauge(
            "actor_restarts_total",
            payd_actors::gauges::ACTOR_RESTARTS.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
}
