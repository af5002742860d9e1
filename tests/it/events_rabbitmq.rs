//! Events through the real RabbitMQ on 127.0.0.1:5672: a storm arrives exactly once per event id
//! (after consumer dedupe) and in order per aggregate key; a broker outage in the middle of a storm
//! (the app talks to RabbitMQ through a TCP proxy the test cuts) loses nothing and never holds up a
//! money operation; a consumer that crashes between processing and ack sends no second e-mail; a
//! malformed message goes to the dead-letter queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use tokio::sync::broadcast;

use crate::events_support::*;
use payd::config::BrokerKind;
use payd::events::broker::rabbitmq::{dead_letter_queue, queue_name};
use payd::events::Handler;

const RABBIT: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn settings(url: &str) -> (payd::config::Settings, String) {
    let mut s = common::settings();
    // Every transfer e-mailed: the notifier's dedupe rows are then exactly `mailed_events`.
    s.notifications.transfer_min_amount = 0;
    let exchange = format!("payd-test.{}", uuid::Uuid::new_v4().simple());
    s.events.broker = BrokerKind::RabbitMq;
    s.events.rabbitmq_url = payd::config::Secret::new(url);
    s.events.rabbitmq_exchange = exchange.clone();
    s.events.backoff_initial_ms = 100;
    s.events.backoff_max_ms = 1000;
    (s, exchange)
}

/// Deletes the test's queues and exchanges (best effort).
async fn cleanup(exchange: &str, groups: &[&str]) {
    let Ok(conn) = Connection::connect(RABBIT, ConnectionProperties::default()).await else { return };
    let Ok(ch) = conn.create_channel().await else { return };
    for g in groups {
        let _ = ch.queue_delete(queue_name(exchange, g).into(), QueueDeleteOptions::default()).await;
    }
    let _ = ch.queue_delete(dead_letter_queue(exchange).into(), QueueDeleteOptions::default()).await;
    let _ = ch.exchange_delete(exchange.into(), Default::default()).await;
    let _ = ch.exchange_delete(format!("{exchange}.dlx").into(), Default::default()).await;
    let _ = conn.close(200, "bye".into()).await;
}

#[actix_web::test]
async fn a_storm_arrives_exactly_once_and_in_order_per_key() {
    let (settings, exchange) = settings(RABBIT);
    let app = EvApp::spawn(settings).await;
    let probe = app.probe("probe").await;
    let crowd = crowd(&app.api, 6).await;
    let ok = storm(&app.api, &crowd, 240, "s", Arc::new(AtomicUsize::new(0))).await;
    assert_eq!(ok, 240);
    all_delivered(&app, &probe, Duration::from_secs(90)).await;
    let mut conn = app.db();
    let rows = outbox(&mut conn);
    assert!(rows.len() >= 240 + 12, "{} events", rows.len());
    assert_exactly_once_in_order(&rows, &probe);
    // The app's own consumers (through RabbitMQ) processed every event exactly once.
    eventually(Duration::from_secs(60), "notifier and webhook dispatcher caught up", || {
        let n = count(&mut conn, "SELECT count(*) AS n FROM processed_events WHERE consumer = 'notifier'");
        let w = count(&mut conn, "SELECT count(*) AS n FROM processed_events WHERE consumer = 'webhooks'");
        // No merchant events in the storm: the dispatcher records none (events that cannot become a
        // webhook write nothing).
        n == mailed_events(&mut conn) && w == 0
    })
    .await;
    cleanup(&exchange, &["notifier", "webhooks", "probe"]).await;
}

/// A TCP proxy to RabbitMQ that the test can cut (closing every connection and refusing new ones).
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    kill: broadcast::Sender<()>,
}

impl Proxy {
    async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (kill, _) = broadcast::channel(4);
        let (up2, kill2) = (up.clone(), kill.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut stop = kill2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stop.recv() => {}
                    }
                });
            }
        });
        Self { port, up, kill }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let _ = self.kill.send(());
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[actix_web::test]
async fn a_broker_outage_mid_storm_loses_nothing_and_never_blocks_money() {
    let proxy = Arc::new(Proxy::start(5672).await);
    let (settings, exchange) = settings(&format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port));
    let app = EvApp::spawn(settings).await;
    let probe = app.probe("probe").await;
    let crowd = crowd(&app.api, 6).await;
    all_delivered(&app, &probe, Duration::from_secs(60)).await;

    // Cut the broker once a third of the storm is done; the storm goes on.
    let done = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, proxy) = (done.clone(), proxy.clone());
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < 60 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            proxy.cut();
        })
    };
    let ok = storm(&app.api, &crowd, 180, "o", done.clone()).await;
    watcher.await.unwrap();
    assert_eq!(ok, 180, "every money operation succeeded");
    // Still cut: the storm finished without the broker. Its events wait in the outbox.
    assert!(!proxy.up.load(Ordering::SeqCst));
    let mut conn = app.db();
    let waiting = count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL");
    assert!(waiting > 0, "events published although the broker is unreachable?");
    let status = app.api.call("GET", "/api/v1/admin/events", Some(&crowd.admin), None).await;
    assert!(status.body["outbox_depth"].as_i64().unwrap() > 0, "{}", status.body);

    proxy.restore();
    all_delivered(&app, &probe, Duration::from_secs(120)).await;
    let rows = outbox(&mut conn);
    assert_exactly_once_in_order_or_redelivered(&rows, &probe);
    eventually(Duration::from_secs(60), "notifier caught up after the outage", || {
        count(&mut conn, "SELECT count(*) AS n FROM processed_events WHERE consumer = 'notifier'")
            == mailed_events(&mut conn)
    })
    .await;
    let text = reqwest::get(format!("{}/metrics", app.api.base)).await.unwrap().text().await.unwrap();
    assert!(text.lines().any(|l| l.starts_with("payd_events_publish_failures_total{broker=\"rabbitmq\"}")), "{text}");
    cleanup(&exchange, &["notifier", "webhooks", "probe"]).await;
}

/// After an outage, a message whose confirm was lost may be published again: every event arrived,
/// exactly once after dedupe, and nothing unknown arrived.
fn assert_exactly_once_in_order_or_redelivered(rows: &[Row], probe: &Probe) {
    let ids: std::collections::HashSet<uuid::Uuid> = rows.iter().map(|r| r.event_id).collect();
    let seen = probe.distinct();
    assert_eq!(seen, ids, "delivered set equals the outbox");
}

#[actix_web::test]
async fn a_consumer_crash_between_processing_and_ack_sends_no_second_email() {
    let (mut settings, exchange) = settings(RABBIT);
    settings.events.consumers_enabled = false;
    let app = EvApp::spawn(settings).await;
    let api = &app.api;
    let admin = api.admin_token().await;
    let email = "crash.events@example.com";
    let (_, token) = api.verified_user(&admin, email).await;
    let card = api.issue_card(&token, "debit", None, None).await;
    let r = api
        .money(&token, "/api/v1/topups", "c1", &json!({"card_id": card, "amount": 700_000, "method": "ovo"}))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let mut conn = app.db();
    eventually(Duration::from_secs(30), "events published to RabbitMQ", || {
        count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL") == 0
    })
    .await;

    // A notifier instance takes the top-up message, processes it (the e-mail job is committed) and
    // dies before acknowledging: its connection goes away without an ack.
    let queue = queue_name(&exchange, "notifier");
    let conn_a = Connection::connect(RABBIT, ConnectionProperties::default()).await.unwrap();
    let ch = conn_a.create_channel().await.unwrap();
    let notifier = payd::notify::notifier::Notifier::new(
        app.state.db.clone(),
        Arc::new(tokio::sync::Notify::new()),
        payd::notify::preferences::Preferences::defaults(&app.settings.notifications),
    );
    let mut topup_id = None;
    while let Some(msg) = ch.basic_get(queue.clone().into(), BasicGetOptions { no_ack: false }).await.unwrap() {
        let event: payd::events::Envelope = serde_json::from_slice(&msg.delivery.data).unwrap();
        if event.event_type == "topup.completed" {
            notifier.handle(&event).await.unwrap();
            topup_id = Some(event.id);
            break;
        }
        msg.delivery.acker.ack(Default::default()).await.unwrap();
    }
    let topup_id = topup_id.expect("top-up event in the notifier queue");
    drop(ch);
    conn_a.close(320, "crash".into()).await.ok();

    // The real consumers start; RabbitMQ redelivers the unacknowledged message.
    let before = duplicates();
    payd::events::spawn_consumers(&app.state);
    eventually(Duration::from_secs(30), "redelivery recognised as a duplicate", || duplicates() > before).await;
    eventually(Duration::from_secs(30), "the e-mail sent", || {
        count(
            &mut conn,
            &format!("SELECT count(*) AS n FROM email_jobs WHERE event_id = '{topup_id}' AND status = 'sent'"),
        ) == 1
    })
    .await;
    assert_eq!(count(&mut conn, &format!("SELECT count(*) AS n FROM email_jobs WHERE event_id = '{topup_id}'")), 1);
    let sent = count(
        &mut conn,
        &format!("SELECT count(*) AS n FROM mailbox WHERE to_address = '{email}' AND subject LIKE 'Top-up of%'"),
    );
    assert_eq!(sent, 1, "exactly one top-up e-mail");

    // A malformed message: dead-lettered (reject → DLX → dead-letter queue) and recorded; the
    // consumer keeps going.
    let conn_b = Connection::connect(RABBIT, ConnectionProperties::default()).await.unwrap();
    let ch = conn_b.create_channel().await.unwrap();
    ch.basic_publish(
        exchange.clone().into(),
        "payment.completed".into(),
        BasicPublishOptions::default(),
        b"{\"this is\": not an event",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    eventually(Duration::from_secs(30), "malformed message recorded", || {
        count(&mut conn, "SELECT count(*) AS n FROM dead_letters WHERE kind = 'message' AND reference = 'unparsed'")
            == 2
    })
    .await;
    let mut dead = 0;
    for _ in 0..50 {
        if ch.basic_get(dead_letter_queue(&exchange).into(), BasicGetOptions { no_ack: true }).await.unwrap().is_some()
        {
            dead += 1;
            if dead == 2 {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(dead, 2, "one dead letter per consumer group in the dead-letter queue");
    let r = api.money(&token, "/api/v1/withdrawals", "c2", &json!({"card_id": card, "amount": 60_000})).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    eventually(Duration::from_secs(30), "later events still processed", || {
        count(
            &mut conn,
            &format!("SELECT count(*) AS n FROM mailbox WHERE to_address = '{email}' AND subject LIKE 'Withdrawal%'"),
        ) == 1
    })
    .await;
    conn_b.close(200, "bye".into()).await.ok();
    cleanup(&exchange, &["notifier", "webhooks"]).await;
}

fn duplicates() -> u64 {
    let text = payd::metrics::render();
    text.lines()
        .find(|l| l.starts_with("payd_events_consumed_total{consumer=\"notifier\",outcome=\"duplicate\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
