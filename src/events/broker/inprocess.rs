//! No broker: publishing hands each event to this instance's consumers directly and succeeds only
//! once every consumer has committed it, so the relay marks nothing published that was not handled.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Broker, BrokerError, PublishError};
use crate::events::{Consumer, Envelope};

#[derive(Default)]
pub struct InProcessBroker {
    consumers: Mutex<Vec<Arc<Consumer>>>,
}

impl InProcessBroker {
    fn consumers(&self) -> Vec<Arc<Consumer>> {
        self.consumers.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Broker for InProcessBroker {
    fn kind(&self) -> &'static str {
        "inprocess"
    }

    async fn publish(&self, events: &[Envelope]) -> Result<(), PublishError> {
        // Each consumer takes the batch at once (one transaction where its handler can). An event
        // counts as published only when every consumer is done with it: the published prefix is the
        // shortest done prefix, and a later consumer is only offered what the earlier ones finished.
        let mut done = events.len();
        let mut failure = None;
        for c in self.consumers() {
            if let Err((n, reason)) = c.process_batch_once(&events[..done]).await {
                done = n;
                failure = Some(reason);
            }
        }
        match failure {
            None => Ok(()),
            Some(reason) => Err(PublishError { published: done, error: BrokerError::Consumer(reason) }),
        }
    }

    async fn subscribe(&self, consumer: Consumer) -> Result<(), BrokerError> {
        tracing::info!(consumer = consumer.name(), "in-process consumer registered");
        self.consumers
            .lock()
            .map_err(|_| BrokerError::Config("consumer registry poisoned".into()))?
            .push(Arc::new(consumer));
        Ok(())
    }
}
