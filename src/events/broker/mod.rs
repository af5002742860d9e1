//! The broker adapter: one trait, three implementations chosen by `events.broker` — in-process
//! (development default), RabbitMQ (lapin) and Kafka (rdkafka). Publishing and consuming both go
//! through it; consumers are [`Consumer`]s whose handler runs before the message is acknowledged.

pub mod inprocess;
pub mod kafka;
pub mod rabbitmq;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{BrokerKind, EventSettings};
use crate::events::{Consumer, Envelope};

/// The broker could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker configuration: {0}")]
    Config(String),
    /// An in-process consumer asked for the event to be retried later.
    #[error("consumer not ready: {0}")]
    Consumer(String),
}

/// A publish round that did not complete: the first `published` events were confirmed (in order),
/// the rest were not.
#[derive(Debug, Clone, thiserror::Error)]
#[error("published {published} event(s), then: {error}")]
pub struct PublishError {
    pub published: usize,
    pub error: BrokerError,
}

/// What a handler did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Its effects are committed (together with the dedupe record).
    Processed,
    /// It had been processed before; nothing was done.
    Duplicate,
}

/// Why a handler did not process an event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Transient (database unavailable…): retry the same event later.
    #[error("retry: {0}")]
    Retry(String),
    /// The event can never be processed (bad payload): dead-letter it.
    #[error("rejected: {0}")]
    Reject(String),
}

impl From<crate::storage::StorageError> for HandlerError {
    fn from(e: crate::storage::StorageError) -> Self {
        Self::Retry(e.to_string())
    }
}

impl From<diesel::result::Error> for HandlerError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Retry(crate::storage::StorageError::from(e).to_string())
    }
}

/// A consumer's processing of one event. Implementations must be idempotent by event id.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Processes `event` and commits its effects.
    ///
    /// # Errors
    /// `Retry` for transient failures, `Reject` for events that can never be processed.
    async fn handle(&self, event: &Envelope) -> Result<Handled, HandlerError>;

    /// Processes `events` in order, where it can in one transaction (the in-process broker hands
    /// over a whole relay batch: one commit instead of one per event). Returns one outcome per
    /// event, stopping after the first `Retry`: a shorter vector means the events after it were
    /// not processed. The default handles them one by one.
    async fn handle_batch(&self, events: &[Envelope]) -> Vec<Result<Handled, HandlerError>> {
        one_by_one(self, events).await
    }
}

/// Handles `events` one by one with [`Handler::handle`], stopping after the first `Retry`.
pub async fn one_by_one<H: Handler + ?Sized>(handler: &H, events: &[Envelope]) -> Vec<Result<Handled, HandlerError>> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let outcome = handler.handle(event).await;
        let stop = matches!(outcome, Err(HandlerError::Retry(_)));
        out.push(outcome);
        if stop {
            break;
        }
    }
    out
}

/// A message broker as payd uses it.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// `inprocess`, `rabbitmq` or `kafka` (also the metrics label).
    fn kind(&self) -> &'static str;

    /// Publishes `events` in order and returns once the broker has confirmed every one of them
    /// (RabbitMQ publisher confirms, Kafka acks=all).
    ///
    /// # Errors
    /// `PublishError` telling how many leading events were confirmed before the failure.
    async fn publish(&self, events: &[Envelope]) -> Result<(), PublishError>;

    /// Starts consuming for `consumer` in the background (reconnecting by itself). Each message is
    /// acknowledged (RabbitMQ ack, Kafka offset commit) only after the consumer has processed it.
    ///
    /// # Errors
    /// `BrokerError::Config` when the consumer cannot be set up at all.
    async fn subscribe(&self, consumer: Consumer) -> Result<(), BrokerError>;
}

/// The configured broker.
///
/// # Errors
/// `BrokerError::Config` when the client cannot be configured.
pub fn build(settings: &EventSettings) -> Result<Arc<dyn Broker>, BrokerError> {
    Ok(match settings.broker {
        BrokerKind::InProcess => Arc::new(inprocess::InProcessBroker::default()),
        BrokerKind::RabbitMq => Arc::new(rabbitmq::RabbitBroker::new(settings)),
        BrokerKind::Kafka => Arc::new(kafka::KafkaBroker::new(settings)?),
    })
}
