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
        let consumers = self.consumers();
        for (i, event) in events.iter().enumerate() {
            for c in &consumers {
                if let Err(reason) = c.process_once(event).await {
                    return Err(PublishError { published: i, error: BrokerError::Consumer(reason) });
                }
            }
        }
        Ok(())
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
