//! Events through a real Kafka-protocol broker (tansu): a storm arrives exactly once per event id
//! (after consumer dedupe) and in order per aggregate key; the broker process is stopped in the middle
//! of a storm and restarted — every event is delivered afterwards and no money operation waited for it.
//!
//! The storm test uses the broker `make services` starts (`PAYD_TEST_KAFKA`, default
//! 127.0.0.1:9092); the outage test starts its own tansu (`PAYD_TEST_TANSU`, default
//! `~/.cargo/bin/tansu`, else `tansu` on PATH) and stops it with SIGSTOP / restarts it with SIGCONT.
//! (Not SIGKILL + a new process: tansu here keeps its log in memory, so a new process is a broker
//! that lost every topic — Kafka brokers keep their log — and librdkafka 2.12 crashes on the null topic
//! names such a broker returns for the old topic ids.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::events_support::*;
use payd::config::BrokerKind;

fn settings(brokers: &str) -> payd::config::Settings {
    let mut s = common::settings();
    // Every transfer e-mailed: the notifier's dedupe rows are then exactly `mailed_events`.
    s.notifications.transfer_min_amount = 0;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    s.events.broker = BrokerKind::Kafka;
    s.events.kafka_brokers = brokers.to_owned();
    s.events.kafka_topic_prefix = format!("payd-test-{tag}");
    s.events.kafka_group_prefix = format!("payd-test-{tag}");
    s.events.kafka_partitions = 2;
    s.events.kafka_message_timeout_ms = 5000;
    s.events.backoff_initial_ms = 100;
    s.events.backoff_max_ms = 1000;
    s
}

fn tansu_bin() -> String {
    if let Ok(p) = std::env::var("PAYD_TEST_TANSU") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let local = format!("{home}/.cargo/bin/tansu");
    if std::path::Path::new(&local).exists() {
        local
    } else {
        "tansu".into()
    }
}

struct Tansu {
    port: u16,
    child: Child,
}

impl Tansu {
    async fn start(port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("tansu could not be started ({e}); run `make services` to build it"));
        let start = std::time::Instant::now();
        while !port_open(port) {
            assert!(start.elapsed() < Duration::from_secs(30), "tansu did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { port, child }
    }

    fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

#[actix_web::test]
async fn a_storm_arrives_exactly_once_and_in_order_per_key() {
    let brokers = std::env::var("PAYD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let port: u16 = brokers.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(9092);
    assert!(port_open(port), "no Kafka broker on {brokers}: run `make services` (starts tansu)");
    let app = EvApp::spawn(settings(&brokers)).await;
    let probe = app.probe("probe").await;
    let crowd = crowd(&app.api, 6).await;
    let ok = storm(&app.api, &crowd, 240, "s", Arc::new(AtomicUsize::new(0))).await;
    assert_eq!(ok, 240);
    all_delivered(&app, &probe, Duration::from_secs(120)).await;
    let mut conn = app.db();
    let rows = outbox(&mut conn);
    assert_exactly_once_in_order(&rows, &probe);
    eventually(Duration::from_secs(60), "notifier and webhook dispatcher caught up", || {
        let n = count(&mut conn, "SELECT count(*) AS n FROM processed_events WHERE consumer = 'notifier'");
        let w = count(&mut conn, "SELECT count(*) AS n FROM processed_events WHERE consumer = 'webhooks'");
        // No merchant events in the storm: the dispatcher records none (events that cannot become a
        // webhook write nothing).
        n == mailed_events(&mut conn) && w == 0
    })
    .await;
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "kill {sig} {pid}");
}

#[actix_web::test]
async fn the_broker_stopped_mid_storm_and_restarted_loses_nothing() {
    let port = free_port();
    let tansu = Tansu::start(port).await;
    let pid = tansu.child.id();
    let app = EvApp::spawn(settings(&format!("127.0.0.1:{}", tansu.port))).await;
    let probe = app.probe("probe").await;
    let crowd = crowd(&app.api, 5).await;
    all_delivered(&app, &probe, Duration::from_secs(90)).await;

    // Stop the broker once a quarter of the storm is done; the storm goes on.
    let done = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, stopped) = (done.clone(), stopped.clone());
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < 40 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            signal(pid, "-STOP");
            eprintln!("broker stopped");
            stopped.store(true, Ordering::SeqCst);
        })
    };
    let ok = storm(&app.api, &crowd, 160, "o", done).await;
    watcher.await.unwrap();
    assert_eq!(ok, 160, "every money operation succeeded while the broker was stopped");
    assert!(stopped.load(Ordering::SeqCst));
    let mut conn = app.db();
    eventually(Duration::from_secs(60), "the relay noticed the outage", || {
        count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL AND last_error IS NOT NULL") > 0
    })
    .await;
    assert!(count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL") > 0);

    signal(pid, "-CONT");
    eprintln!(
        "broker continued; {} events waiting",
        count(&mut conn, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
    );
    all_delivered(&app, &probe, Duration::from_secs(150)).await;
    eprintln!("everything delivered after the restart");
    let rows = outbox(&mut conn);
    assert_exactly_once_in_order(&rows, &probe);
    eventually(Duration::from_secs(90), "notifier caught up after the restart", || {
        count(&mut conn, "SELECT count(*) AS n FROM processed_events WHERE consumer = 'notifier'")
            == mailed_events(&mut conn)
    })
    .await;
    let text = reqwest::get(format!("{}/metrics", app.api.base)).await.unwrap().text().await.unwrap();
    assert!(text.lines().any(|l| l.starts_with("payd_events_publish_failures_total{broker=\"kafka\"}")), "{text}");
}
