//! The relay: a single-task actor per instance that moves the outbox to the broker. Each round claims
//! a batch (lease + `FOR UPDATE SKIP LOCKED`, see `outbox`), publishes it in id order and waits for
//! the broker's confirmation, then marks the confirmed prefix published and releases the rest. While
//! the broker is down it backs off exponentially; the outbox just grows and nothing that writes to it
//! ever waits for the broker.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::EventSettings;
use crate::events::outbox::{self, Claimed};
use crate::events::{Backoff, Broker, BrokerError, Envelope, PublishError};
use crate::storage::{self, PgPool, StorageError};

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub batch: i64,
    pub poll: Duration,
    pub lease_secs: i64,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl From<&EventSettings> for RelayConfig {
    fn from(s: &EventSettings) -> Self {
        Self {
            batch: s.relay_batch,
            poll: Duration::from_millis(s.poll_interval_ms),
            lease_secs: s.lease_secs,
            backoff_initial: Duration::from_millis(s.backoff_initial_ms),
            backoff_max: Duration::from_millis(s.backoff_max_ms),
        }
    }
}

pub struct Relay {
    db: PgPool,
    broker: Arc<dyn Broker>,
    cfg: RelayConfig,
    owner: Uuid,
    wake: Arc<Notify>,
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Nothing to publish.
    Idle,
    /// `n` events published (all that were claimed).
    Published(usize),
    /// The broker failed after `n` confirmed events.
    Failed(usize),
}

impl Relay {
    pub fn new(db: PgPool, broker: Arc<dyn Broker>, cfg: RelayConfig) -> Self {
        Self { db, broker, cfg, owner: Uuid::new_v4(), wake: Arc::new(Notify::new()) }
    }

    pub fn with_owner(mut self, owner: Uuid) -> Self {
        self.owner = owner;
        self
    }

    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Runs the relay in the background for the life of the process.
    pub fn spawn(self) {
        tracing::info!(broker = self.broker.kind(), owner = %self.owner, "outbox relay started");
        actix_web::rt::spawn(self.run(crate::shutdown::Shutdown::new(Duration::from_secs(1))));
    }

    /// Runs the relay until `shutdown` begins (the round in progress is finished first).
    pub fn spawn_until(self, shutdown: &crate::shutdown::Shutdown) {
        tracing::info!(broker = self.broker.kind(), owner = %self.owner, "outbox relay started");
        shutdown.spawn("relay", self.run(shutdown.clone()));
    }

    async fn run(self, shutdown: crate::shutdown::Shutdown) {
        let mut backoff = Backoff::new(self.cfg.backoff_initial, self.cfg.backoff_max);
        while !shutdown.is_started() {
            match self.round().await {
                Ok(Round::Published(_)) => backoff.reset(),
                Ok(Round::Idle) => {
                    backoff.reset();
                    shutdown.wait_for(&self.wake, self.cfg.poll).await;
                }
                Ok(Round::Failed(_)) | Err(_) => {
                    let wait = backoff.next_delay();
                    shutdown.sleep(wait).await;
                }
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// One claim → publish → mark round.
    ///
    /// # Errors
    /// A storage error (claiming or marking failed; leased rows come back when the lease ends).
    pub async fn round(&self) -> Result<Round, StorageError> {
        let (owner, batch, lease) = (self.owner, self.cfg.batch, self.cfg.lease_secs);
        let claimed: Vec<Claimed> =
            storage::run(&self.db, move |conn| outbox::claim(conn, owner, batch, lease).map_err(StorageError::from))
                .await
                .inspect_err(|e| tracing::warn!(error = %e, "relay could not claim outbox rows"))?;
        if claimed.is_empty() {
            return Ok(Round::Idle);
        }
        let events: Vec<Envelope> = claimed.iter().map(|c| c.event.clone()).collect();
        // Bounded by the lease, so another relay never takes rows this one is still publishing.
        let limit = Duration::from_secs(u64::try_from(lease.max(2) / 2).unwrap_or(1));
        let outcome = match tokio::time::timeout(limit, self.broker.publish(&events)).await {
            Ok(r) => r,
            Err(_) => Err(PublishError { published: 0, error: BrokerError::Unavailable("publish timed out".into()) }),
        };
        let (published, error) = match outcome {
            Ok(()) => (events.len(), None),
            Err(e) => (e.published.min(events.len()), Some(e.error.to_string())),
        };
        let done: Vec<i64> = claimed[..published].iter().map(|c| c.id).collect();
        let rest: Vec<i64> = claimed[published..].iter().map(|c| c.id).collect();
        let err_text = error.clone().unwrap_or_default();
        storage::transaction(&self.db, move |conn| {
            outbox::mark_published(conn, &done)?;
            outbox::release(conn, owner, &rest, &err_text)?;
            Ok::<_, StorageError>(())
        })
        .await
        .inspect_err(|e| tracing::error!(error = %e, "relay could not mark outbox rows; they will be republished"))?;
        let kind = self.broker.kind();
        if let Some(m) = crate::metrics::METRICS.as_ref() {
            m.events_published.with_label_values(&[kind]).inc_by(u64::try_from(published).unwrap_or(0));
            if error.is_some() {
                m.events_publish_failures.with_label_values(&[kind]).inc();
            }
        }
        match error {
            None => {
                tracing::debug!(broker = kind, published, "outbox batch published");
                Ok(Round::Published(published))
            }
            Some(e) => {
                tracing::warn!(broker = kind, published, pending = claimed.len() - published, error = %e,
                    "broker unavailable; outbox rows kept for retry");
                Ok(Round::Failed(published))
            }
        }
    }
}
