//! Statistics and dashboards: figures of top-ups, withdrawals, transfers, merchant payments and card
//! balances per calendar month and year (in the platform time zone), per card, merchant, API key or
//! platform-wide — read from daily rollups ([`rollup`]) so no query scans the operations.
//!
//! Semantics (see docs/statistics.md): amounts count successful operations only; `status` figures
//! count both outcomes; a reversal or refund reduces the figures of the kind it corrects, in the
//! period it happens (closed periods never change); balances are end-of-period balances from the
//! ledger's running balances; every amount is `i64` minor units with its currency.

pub mod query;
pub mod rollup;
pub mod routes;
pub mod seed;

use std::time::Duration;

use crate::app::AppState;
use crate::storage::{self, StorageError};

/// The statistics domain's errors.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A query parameter is unknown, malformed or makes no sense with the others.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The figures asked for are not the caller's to read.
    #[error("{0}")]
    Forbidden(String),
    /// The card, merchant or API key does not exist or is not visible to the caller.
    #[error("{what} not found")]
    NotFound { field: &'static str, what: &'static str },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for StatsError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Storage(e.into())
    }
}

impl StatsError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.to_owned(), message: message.into() }
    }
}

/// Starts the rollup job: a round every `stats.interval_ms` (0 = off, e.g. when another deployment
/// maintains the rollups).
pub fn spawn(state: &AppState) {
    let cfg = state.settings.stats.clone();
    if cfg.interval_ms == 0 {
        return;
    }
    let st = state.clone();
    state.shutdown.spawn("stats-rollups", async move {
        let mut tick = tokio::time::interval(Duration::from_millis(cfg.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let c = cfg.clone();
            let round = storage::run(&st.db, move |conn| {
                rollup::round(conn, &c.time_zone, c.max_batch, c.gap_grace_secs).map_err(StorageError::from)
            })
            .await;
            match round {
                Ok(r) if r.rebuilt => tracing::info!(upto = r.upto, "statistics rebuilt for a new time zone"),
                Ok(r) if r.counted > 0 => {
                    tracing::debug!(counted = r.counted, gaps = r.gaps, upto = r.upto, "stats round")
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "stats round failed; retried next tick"),
            }
        }
    });
}

/// Checks the configured time zone once at start-up.
///
/// # Errors
/// When PostgreSQL does not know the zone.
pub async fn check_time_zone(state: &AppState) -> anyhow::Result<()> {
    let tz = state.settings.stats.time_zone.clone();
    let known = storage::run(&state.db, {
        let tz = tz.clone();
        move |conn| rollup::time_zone_known(conn, &tz).map_err(StorageError::from)
    })
    .await?;
    if !known {
        anyhow::bail!("stats.time_zone: unknown time zone {tz:?} (use an IANA name such as Asia/Jakarta)");
    }
    Ok(())
}
