//! RabbitMQ via lapin. Topology (declared by publishers and consumers alike, so nothing published
//! while a consumer is down is lost): a durable topic exchange `<exchange>` with routing key = event
//! type; one durable queue per consumer group `<exchange>.<group>` bound with `#`; a dead-letter
//! exchange `<exchange>.dlx` (fanout) feeding the durable queue `<exchange>.dead-letter`. Publishing
//! uses publisher confirms and persistent messages; consumers use manual acks after processing and
//! reject malformed messages (without requeue) to the dead-letter queue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::{Broker, BrokerError, PublishError};
use crate::config::EventSettings;
use crate::events::consumer::Disposition;
use crate::events::{Backoff, Consumer, Envelope, GROUPS};

/// Messages a consumer takes from the broker at once (as many as are already delivered, up to this).
const BATCH_MAX: usize = 64;

/// Longest wait for a batch's publisher confirms before the connection is considered dead.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The queue a consumer group reads.
pub fn queue_name(exchange: &str, group: &str) -> String {
    format!("{exchange}.{group}")
}

/// Where rejected (malformed) messages end up.
pub fn dead_letter_queue(exchange: &str) -> String {
    format!("{exchange}.dead-letter")
}

fn dlx(exchange: &str) -> String {
    format!("{exchange}.dlx")
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

pub struct RabbitBroker {
    url: String,
    exchange: String,
    prefetch: u16,
    retry_initial: Duration,
    retry_max: Duration,
    publisher: Mutex<Option<(Connection, Channel)>>,
    /// Groups whose queues this instance declares (payd's own plus any subscribed here).
    groups: std::sync::Mutex<Vec<String>>,
}

impl RabbitBroker {
    pub fn new(settings: &EventSettings) -> Self {
        Self {
            url: settings.rabbitmq_url.expose().to_owned(),
            exchange: settings.rabbitmq_exchange.clone(),
            prefetch: settings.rabbitmq_prefetch.max(1),
            retry_initial: Duration::from_millis(settings.backoff_initial_ms),
            retry_max: Duration::from_millis(settings.backoff_max_ms),
            publisher: Mutex::new(None),
            groups: std::sync::Mutex::new(GROUPS.iter().map(|g| (*g).to_owned()).collect()),
        }
    }

    fn groups(&self) -> Vec<String> {
        self.groups.lock().map(|g| g.clone()).unwrap_or_default()
    }

    async fn connect(&self) -> Result<Connection, BrokerError> {
        let props = ConnectionProperties::default().with_connection_name("payd".into());
        Connection::connect(&self.url, props).await.map_err(unavailable)
    }

    /// The publisher channel (connecting, enabling confirms and declaring the topology if needed).
    async fn publisher(&self) -> Result<Channel, BrokerError> {
        let mut guard = self.publisher.lock().await;
        if let Some((conn, ch)) = guard.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        *guard = None;
        let conn = self.connect().await?;
        let ch = conn.create_channel().await.map_err(unavailable)?;
        ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(unavailable)?;
        declare_topology(&ch, &self.exchange, &self.groups()).await?;
        tracing::info!(exchange = %self.exchange, "rabbitmq publisher connected");
        *guard = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn drop_publisher(&self) {
        let old = self.publisher.lock().await.take();
        if let Some((conn, _)) = old {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "reconnecting".into())).await;
        }
    }

    async fn publish_on(&self, ch: &Channel, events: &[Envelope]) -> Result<(), PublishError> {
        let fail = |published: usize, e: lapin::Error| PublishError { published, error: unavailable(e) };
        let mut confirms = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let body = serde_json::to_vec(event)
                .map_err(|e| PublishError { published: i, error: BrokerError::Config(e.to_string()) })?;
            let mut headers = FieldTable::default();
            headers.insert("aggregate_key".into(), AMQPValue::LongString(event.aggregate_key.clone().into()));
            headers.insert("schema_version".into(), AMQPValue::LongInt(event.schema_version));
            let props = BasicProperties::default()
                .with_message_id(event.id.to_string().into())
                .with_type(event.event_type.clone().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_headers(headers);
            let confirm = ch
                .basic_publish(
                    self.exchange.clone().into(),
                    event.event_type.clone().into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
                .map_err(|e| fail(0, e));
            match confirm {
                Ok(c) => confirms.push(c),
                Err(e) => {
                    // Nothing after a failed publish may be confirmed ahead of it: wait for those sent.
                    let sent = confirms.len();
                    let ok = await_confirms(confirms).await;
                    return Err(PublishError { published: ok.min(sent), error: e.error });
                }
            }
        }
        let total = confirms.len();
        let ok = await_confirms(confirms).await;
        if ok == total {
            Ok(())
        } else {
            Err(PublishError { published: ok, error: BrokerError::Unavailable("publish not confirmed (nack)".into()) })
        }
    }

    async fn consume(&self, consumer: &Consumer) -> Result<(), BrokerError> {
        let conn = self.connect().await?;
        let result = self.consume_on(&conn, consumer).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "reconnecting".into())).await;
        result
    }

    async fn consume_on(&self, conn: &Connection, consumer: &Consumer) -> Result<(), BrokerError> {
        let ch = conn.create_channel().await.map_err(unavailable)?;
        let mut groups = self.groups();
        if !groups.iter().any(|g| g == consumer.name()) {
            groups.push(consumer.name().to_owned());
        }
        declare_topology(&ch, &self.exchange, &groups).await?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default()).await.map_err(unavailable)?;
        let queue = queue_name(&self.exchange, consumer.name());
        let tag = format!("payd-{}-{}", consumer.name(), uuid::Uuid::new_v4().simple());
        let mut stream = ch
            .basic_consume(queue.clone().into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(unavailable)?;
        tracing::info!(queue = %queue, "rabbitmq consumer started");
        loop {
            // A dead connection does not always end the stream: check the connection while idle.
            let next = match tokio::time::timeout(Duration::from_secs(2), stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if conn.status().connected() && ch.status().connected() {
                        continue;
                    }
                    return Err(BrokerError::Unavailable("connection lost".into()));
                }
            };
            let first = match next {
                Some(d) => d.map_err(unavailable)?,
                None => return Err(BrokerError::Unavailable("consumer stream ended".into())),
            };
            // Whatever else the channel already delivered (up to the prefetch) is processed with it,
            // as one batch; an error seen while collecting ends the loop after this batch is settled.
            let mut batch = vec![first];
            let mut ended = None;
            while batch.len() < BATCH_MAX {
                match stream.next().now_or_never() {
                    Some(Some(Ok(d))) => batch.push(d),
                    Some(Some(Err(e))) => {
                        ended = Some(unavailable(e));
                        break;
                    }
                    Some(None) => {
                        ended = Some(BrokerError::Unavailable("consumer stream ended".into()));
                        break;
                    }
                    None => break,
                }
            }
            let raws: Vec<&[u8]> = batch.iter().map(|d| d.data.as_slice()).collect();
            let dispositions = consumer.process_many(&raws).await;
            let settle = async {
                for (delivery, disposition) in batch.iter().zip(dispositions) {
                    match disposition {
                        Disposition::Ack => delivery.acker.ack(BasicAckOptions::default()).await?,
                        Disposition::DeadLetter => delivery.acker.reject(BasicRejectOptions { requeue: false }).await?,
                    };
                }
                Ok::<_, lapin::Error>(())
            };
            // Unacknowledged on a lost connection = redelivered later (and deduplicated).
            match tokio::time::timeout(Duration::from_secs(5), settle).await {
                Ok(r) => {
                    r.map_err(unavailable)?;
                }
                Err(_) => return Err(BrokerError::Unavailable("ack timed out".into())),
            }
            if let Some(e) = ended {
                return Err(e);
            }
        }
    }
}

/// Awaits confirms in order; returns how many leading ones were acks.
async fn await_confirms(confirms: Vec<lapin::PublisherConfirm>) -> usize {
    let mut ok = 0;
    for c in confirms {
        match c.await {
            Ok(conf) if conf.is_ack() => ok += 1,
            _ => break,
        }
    }
    ok
}

/// Declares the exchange, the dead-letter exchange and queue, and one queue per group.
///
/// # Errors
/// `BrokerError::Unavailable` when a declaration fails.
pub async fn declare_topology(ch: &Channel, exchange: &str, groups: &[String]) -> Result<(), BrokerError> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    ch.exchange_declare(exchange.into(), ExchangeKind::Topic, durable, FieldTable::default())
        .await
        .map_err(unavailable)?;
    ch.exchange_declare(dlx(exchange).into(), ExchangeKind::Fanout, durable, FieldTable::default())
        .await
        .map_err(unavailable)?;
    let q = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    let dlq = dead_letter_queue(exchange);
    ch.queue_declare(dlq.clone().into(), q, FieldTable::default()).await.map_err(unavailable)?;
    ch.queue_bind(dlq.into(), dlx(exchange).into(), "".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .map_err(unavailable)?;
    for g in groups {
        let mut args = FieldTable::default();
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(dlx(exchange).into()));
        let name: ShortString = queue_name(exchange, g).into();
        ch.queue_declare(name.clone(), q, args).await.map_err(unavailable)?;
        ch.queue_bind(name, exchange.into(), "#".into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl Broker for RabbitBroker {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    async fn publish(&self, events: &[Envelope]) -> Result<(), PublishError> {
        let attempt = async {
            let ch = self.publisher().await.map_err(|error| PublishError { published: 0, error })?;
            self.publish_on(&ch, events).await
        };
        // A connection that died without a clean close may leave confirms pending: bound the wait.
        let result = match tokio::time::timeout(PUBLISH_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(PublishError { published: 0, error: unavailable("publish timed out") }),
        };
        if result.is_err() {
            self.drop_publisher().await;
        }
        result
    }

    async fn subscribe(&self, consumer: Consumer) -> Result<(), BrokerError> {
        if let Ok(mut g) = self.groups.lock() {
            if !g.iter().any(|x| x == consumer.name()) {
                g.push(consumer.name().to_owned());
            }
        }
        let me = Arc::new(Self {
            url: self.url.clone(),
            exchange: self.exchange.clone(),
            prefetch: self.prefetch,
            retry_initial: self.retry_initial,
            retry_max: self.retry_max,
            publisher: Mutex::new(None),
            groups: std::sync::Mutex::new(self.groups()),
        });
        actix_web::rt::spawn(async move {
            let mut backoff = Backoff::new(me.retry_initial, me.retry_max);
            loop {
                let started = std::time::Instant::now();
                if let Err(e) = me.consume(&consumer).await {
                    if started.elapsed() > Duration::from_secs(10) {
                        backoff.reset();
                    }
                    let wait = backoff.next_delay();
                    tracing::warn!(consumer = consumer.name(), error = %e,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "rabbitmq consumer disconnected; reconnecting");
                    tokio::time::sleep(wait).await;
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::AsyncReadExt;

    /// `amqps://` really speaks TLS: the first bytes the broker receives are a TLS handshake record
    /// (0x16 0x03 …), not the AMQP protocol header (`AMQP\0\0\9\1`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn amqps_urls_open_a_tls_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut first = [0u8; 3];
            s.read_exact(&mut first).await.unwrap();
            first
        });
        let url = format!("amqps://guest:guest@localhost:{port}/%2f");
        let attempt = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), Connection::connect(&url, ConnectionProperties::default()))
                .await
                .map(|r| r.is_ok())
        });
        let first = tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
        assert_eq!(&first[..2], &[0x16, 0x03], "not a TLS ClientHello: {first:?}");
        // The listener hung up: the connection fails (it never pretends to be connected).
        assert!(!matches!(attempt.await.unwrap(), Ok(true)));
    }
}
