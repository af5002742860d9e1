//! Kafka via rdkafka (bundled librdkafka). One topic per event family — the aggregate type:
//! `<prefix>.card` (card lifecycle and every money event), `<prefix>.merchant`, `<prefix>.user` —
//! created on demand; message key = aggregate key, so all events of one key share one partition and
//! stay in order (Kafka orders nothing across topics; see `catalogue::AGGREGATES`); an idempotent
//! producer (`enable.idempotence=true`, acks=all). Consumers are consumer groups
//! (`<group_prefix>.<consumer>`) that store each message's offset only after processing it and
//! commit stored offsets (auto-commit of *stored* offsets only), so a crash replays, never skips.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use super::{Broker, BrokerError, PublishError};
use crate::config::EventSettings;
use crate::events::consumer::Disposition;
use crate::events::{catalogue, Backoff, Consumer, Envelope};

/// Messages a consumer takes from the broker at once (as many as are already delivered, up to this).
const BATCH_MAX: usize = 64;

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

/// The topic of an event: `<prefix>.<aggregate type>`.
pub fn topic_for(prefix: &str, event: &Envelope) -> String {
    format!("{prefix}.{}", catalogue::stream(&event.aggregate_type))
}

/// Every topic payd publishes to.
pub fn topics(prefix: &str) -> Vec<String> {
    catalogue::streams().into_iter().map(|f| format!("{prefix}.{f}")).collect()
}

#[derive(Clone)]
struct Cfg {
    brokers: String,
    topic_prefix: String,
    group_prefix: String,
    partitions: i32,
    message_timeout_ms: u64,
    retry_initial: Duration,
    retry_max: Duration,
    /// Pass-through librdkafka properties (`events.kafka_options`); values never printed.
    options: Vec<(String, crate::config::Secret)>,
}

type Admin = AdminClient<DefaultClientContext>;

pub struct KafkaBroker {
    cfg: Cfg,
    producer: Mutex<Option<Detached<FutureProducer>>>,
    admin: Arc<Detached<Admin>>,
    topics_ready: AtomicBool,
}

/// Destroying a librdkafka client blocks until its threads finish and, for a consumer, until it has
/// left its group — long, or for ever, while the broker is unreachable. Never on the async executor,
/// and never holding up the process's exit: a detached thread does it.
fn dispose<T: Send + 'static>(client: T) {
    std::thread::spawn(move || drop(client));
}

/// A librdkafka client that is destroyed on a detached thread (see [`dispose`]).
pub struct Detached<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Detached<T> {
    fn new(inner: T) -> Self {
        Self(Some(inner))
    }
}

impl<T: Send + 'static> std::ops::Deref for Detached<T> {
    type Target = T;
    #[expect(clippy::expect_used, reason = "the value is only taken out in `drop`")]
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            dispose(inner);
        }
    }
}

impl KafkaBroker {
    /// Configures the clients; nothing connects until the first publish or subscribe.
    ///
    /// # Errors
    /// `BrokerError::Config` when librdkafka refuses the configuration.
    pub fn new(settings: &EventSettings) -> Result<Self, BrokerError> {
        let cfg = Cfg {
            brokers: settings.kafka_brokers.clone(),
            topic_prefix: settings.kafka_topic_prefix.clone(),
            group_prefix: settings.kafka_group_prefix.clone(),
            partitions: settings.kafka_partitions,
            message_timeout_ms: settings.kafka_message_timeout_ms,
            retry_initial: Duration::from_millis(settings.backoff_initial_ms),
            retry_max: Duration::from_millis(settings.backoff_max_ms),
            options: options(&settings.kafka_options)?,
        };
        let admin: Admin = base_config(&cfg).create().map_err(|e| BrokerError::Config(e.to_string()))?;
        let me = Self {
            cfg,
            producer: Mutex::new(None),
            admin: Arc::new(Detached::new(admin)),
            topics_ready: AtomicBool::new(false),
        };
        // Fail fast on a configuration librdkafka refuses.
        let _producer = me.producer()?;
        Ok(me)
    }

    fn base(&self) -> ClientConfig {
        base_config(&self.cfg)
    }

    fn producer(&self) -> Result<FutureProducer, BrokerError> {
        let mut guard = self.producer.lock().map_err(|_| BrokerError::Config("producer lock poisoned".into()))?;
        if let Some(p) = guard.as_ref() {
            match p.client().fatal_error() {
                None => return Ok(FutureProducer::clone(p)),
                Some((code, reason)) => {
                    tracing::warn!(?code, reason, "kafka producer hit a fatal error; recreating it");
                    drop(guard.take());
                }
            }
        }
        let timeout = self.cfg.message_timeout_ms.to_string();
        let p: FutureProducer = self
            .base()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", &timeout)
            .set("request.timeout.ms", &timeout)
            .create()
            .map_err(|e| BrokerError::Config(e.to_string()))?;
        *guard = Some(Detached::new(p.clone()));
        Ok(p)
    }

    async fn ensure_topics(&self) -> Result<(), BrokerError> {
        if self.topics_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        ensure_topics(&self.cfg, &self.admin).await?;
        self.topics_ready.store(true, Ordering::Release);
        Ok(())
    }
}

fn base_config(cfg: &Cfg) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", "payd")
        .set("broker.address.family", "v4")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("socket.timeout.ms", "10000");
    // Security and any other librdkafka property from `events.kafka_options` (last, so they win).
    for (k, v) in &cfg.options {
        c.set(k, v.expose());
    }
    c
}

/// librdkafka properties the operator may pass through (TLS, SASL and client tuning); `_` in a key
/// stands for `.` so keys fit environment variables. Keys payd sets for correctness are refused.
///
/// # Errors
/// `BrokerError::Config` naming a refused key.
fn options(
    raw: &std::collections::BTreeMap<String, crate::config::Secret>,
) -> Result<Vec<(String, crate::config::Secret)>, BrokerError> {
    const OWNED: &[&str] = &["enable.idempotence", "acks", "group.id", "enable.auto.offset.store", "bootstrap.servers"];
    let mut out = Vec::new();
    for (k, v) in raw {
        let key = k.trim().to_ascii_lowercase().replace('_', ".");
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            return Err(BrokerError::Config(format!("events.kafka_options: `{k}` is not a librdkafka property")));
        }
        if OWNED.contains(&key.as_str()) {
            return Err(BrokerError::Config(format!("events.kafka_options: `{key}` is set by payd")));
        }
        out.push((key, v.clone()));
    }
    Ok(out)
}

/// Creates the family topics that do not exist yet.
async fn ensure_topics(cfg: &Cfg, admin: &Admin) -> Result<(), BrokerError> {
    let names = topics(&cfg.topic_prefix);
    let new: Vec<NewTopic<'_>> =
        names.iter().map(|n| NewTopic::new(n, cfg.partitions, TopicReplication::Fixed(1))).collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(5)));
    let results = admin.create_topics(new.iter(), &opts).await.map_err(unavailable)?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(BrokerError::Unavailable(format!("create topic {topic}: {code}"))),
        }
    }
    Ok(())
}

/// Errors after which the idempotent producer's id/epoch is unusable: start a new producer.
fn needs_new_producer(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::Fatal
        )
    )
}

fn is_topic_error(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

#[async_trait]
impl Broker for KafkaBroker {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn publish(&self, events: &[Envelope]) -> Result<(), PublishError> {
        let fail0 = |error| PublishError { published: 0, error };
        self.ensure_topics().await.map_err(fail0)?;
        let producer = self.producer().map_err(fail0)?;
        let mut bodies = Vec::with_capacity(events.len());
        for e in events {
            bodies.push(serde_json::to_vec(e).map_err(|x| fail0(BrokerError::Config(x.to_string())))?);
        }
        let topics: Vec<String> = events.iter().map(|e| topic_for(&self.cfg.topic_prefix, e)).collect();
        let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let mut pending = Vec::with_capacity(events.len());
        let mut enqueue_error = None;
        for (i, e) in events.iter().enumerate() {
            let headers = OwnedHeaders::new()
                .insert(Header { key: "event_type", value: Some(e.event_type.as_str()) })
                .insert(Header { key: "event_id", value: Some(ids[i].as_str()) });
            let record = FutureRecord::to(&topics[i]).key(&e.aggregate_key).payload(&bodies[i]).headers(headers);
            match producer.send_result(record) {
                Ok(f) => pending.push(f),
                Err((err, _)) => {
                    enqueue_error = Some(err);
                    break;
                }
            }
        }
        let mut ok = 0;
        let mut error: Option<KafkaError> = enqueue_error;
        for f in pending {
            match f.await {
                Ok(Ok(_)) if error.is_none() => ok += 1,
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    error.get_or_insert(e);
                }
                Err(_) => {
                    error.get_or_insert(KafkaError::Canceled);
                }
            }
        }
        match error {
            None => Ok(()),
            Some(e) => {
                if is_topic_error(&e) {
                    self.topics_ready.store(false, Ordering::Release);
                }
                if needs_new_producer(&e) || producer.client().fatal_error().is_some() {
                    tracing::warn!(error = %e, "kafka producer fenced or fatally failed; a new one will be created");
                    let old = self.producer.lock().ok().and_then(|mut guard| guard.take());
                    drop(producer);
                    drop(old);
                }
                Err(PublishError { published: ok, error: unavailable(e) })
            }
        }
    }

    async fn subscribe(&self, consumer: Consumer) -> Result<(), BrokerError> {
        let cfg = self.cfg.clone();
        let consumer = Arc::new(consumer);
        let group = format!("{}.{}", cfg.group_prefix, consumer.name());
        let client: StreamConsumer = self
            .base()
            .set("group.id", &group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| BrokerError::Config(e.to_string()))?;
        let client = Arc::new(Detached::new(client));
        let admin = self.admin.clone();
        actix_web::rt::spawn(async move {
            let mut backoff = Backoff::new(cfg.retry_initial, cfg.retry_max);
            while let Err(e) = ensure_topics(&cfg, &admin).await {
                let wait = backoff.next_delay();
                tracing::warn!(group = %group, error = %e, "kafka unavailable; consumer waiting for topics");
                tokio::time::sleep(wait).await;
            }
            let names = topics(&cfg.topic_prefix);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            if let Err(e) = client.subscribe(&refs) {
                tracing::error!(group = %group, error = %e, "kafka consumer could not subscribe");
                return;
            }
            tracing::info!(group = %group, "kafka consumer started");
            backoff.reset();
            loop {
                match client.recv().await {
                    Ok(first) => {
                        backoff.reset();
                        // Messages the client already holds are processed with it, as one batch,
                        // in the order received (per partition: offset order).
                        let mut batch = vec![first];
                        while batch.len() < BATCH_MAX {
                            match client.recv().now_or_never() {
                                Some(Ok(m)) => batch.push(m),
                                _ => break,
                            }
                        }
                        let raws: Vec<&[u8]> = batch.iter().map(|m| m.payload().unwrap_or_default()).collect();
                        let dispositions = consumer.process_many(&raws).await;
                        for (msg, disposition) in batch.iter().zip(dispositions) {
                            if disposition == Disposition::DeadLetter {
                                tracing::warn!(group = %group, topic = msg.topic(), partition = msg.partition(),
                                    offset = msg.offset(), "kafka message dead-lettered and skipped");
                            }
                            if let Err(e) = client.store_offset_from_message(msg) {
                                tracing::warn!(group = %group, error = %e, "offset not stored; message may be redelivered");
                            }
                        }
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::debug!(group = %group, error = %e, "kafka consumer error");
                        tokio::time::sleep(wait.min(Duration::from_secs(2))).await;
                    }
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
    use crate::config::Secret;

    fn map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, Secret> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), Secret::new(*v))).collect()
    }

    #[test]
    fn kafka_options_pass_through_with_underscores_for_dots_and_owned_keys_refused() {
        let got = options(&map(&[
            ("security_protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("SASL_PASSWORD", "hunter2-hunter2"),
        ]))
        .unwrap();
        let mut keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, vec!["sasl.mechanism", "sasl.password", "security.protocol"]);
        assert!(!format!("{got:?}").contains("hunter2"), "a value was printed");
        assert!(options(&map(&[("enable_idempotence", "false")])).is_err());
        assert!(options(&map(&[("sasl password", "x")])).is_err());
    }

    #[test]
    fn librdkafka_accepts_tls_and_sasl_settings() {
        let cfg = Cfg {
            brokers: "127.0.0.1:1".into(),
            topic_prefix: "t".into(),
            group_prefix: "g".into(),
            partitions: 1,
            message_timeout_ms: 1000,
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(2),
            options: options(&map(&[
                ("security_protocol", "SASL_SSL"),
                ("sasl_mechanism", "SCRAM-SHA-256"),
                ("sasl_username", "payd"),
                ("sasl_password", "pw"),
            ]))
            .unwrap(),
        };
        let made: Result<Admin, _> = base_config(&cfg).create();
        assert!(made.is_ok(), "{:?}", made.err().map(|e| e.to_string()));
    }
}
