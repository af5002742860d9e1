//! `payd-load`: a load generator for a running payd (HTTP API only).
//!
//! Setup creates `--cards` cards (owned by the admin, or by `--users` users created through the
//! admin API) and funds each with a top-up; then a scenario sends transfers for `--duration` or
//! `--requests`, closed loop (`--connections` workers back to back) or open loop (`--rate R`: the
//! i-th request is scheduled at `start + i/R` and its latency is measured from that scheduled time,
//! so queueing inside the generator counts). At the end it runs `payd verify`, optionally pgbench
//! (TPC-B, `-M prepared`) on the same PostgreSQL server for a ratio, and reads the server's RSS.
//!
//! Example: `payd-load --scenario uniform --cards 10000 --connections 64 --duration 30s --pgbench`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, ValueEnum};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use rand::distributions::Distribution;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Random distinct source and destination cards (uniform).
    Uniform,
    /// Source and destination drawn from a Zipf distribution over the cards (`--zipf-s`).
    Zipf,
    /// Every transfer from one source card to one destination card.
    Hot,
    /// Merchant payments with an API key: every card pays the run's one merchant (`POST /api/v1/payments`).
    Merchant,
    /// Reads only, over uniformly drawn cards: balance 50 %, card 15 %, statement page (20) 15 %,
    /// the card's transfer list (20) 10 %, `/auth/me` 10 %.
    Reads,
    /// The `reads` mix with one uniform transfer per ten reads.
    Mixed,
}

/// One request of the read mix: its label and path, for a card.
fn read_request(rng: &mut impl Rng, card: i64) -> (&'static str, String) {
    match rng.gen_range(0..100u32) {
        0..50 => ("balance", format!("/api/v1/cards/{card}/balance")),
        50..65 => ("card", format!("/api/v1/cards/{card}")),
        65..80 => ("statement", format!("/api/v1/cards/{card}/statement?limit=20")),
        80..90 => ("operations", format!("/api/v1/transfers?card_id={card}&limit=20")),
        _ => ("me", "/api/v1/auth/me".to_owned()),
    }
}

/// How the run's money requests reach payd (setup always uses the HTTP API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Transport {
    Http,
    /// The gRPC API (`--grpc-url`): Ledger.Transfer, or Payments.Pay in the merchant scenario; one
    /// HTTP/2 connection per `--connections` worker.
    Grpc,
}

#[derive(Parser, Debug)]
#[command(
    name = "payd-load",
    version,
    about = "Load generator for a running payd (transfers over the HTTP or gRPC API)"
)]
struct Args {
    /// Base URL of the running payd.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Transport of the measured requests (transfer and merchant scenarios for grpc).
    #[arg(long, value_enum, default_value_t = Transport::Http)]
    transport: Transport,
    /// The gRPC endpoint, for `--transport grpc`.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc_url: String,
    #[arg(long, env = "PAYD_BOOTSTRAP_ADMIN_EMAIL", default_value = "admin@payd.local")]
    admin_email: String,
    #[arg(long, env = "PAYD_BOOTSTRAP_ADMIN_PASSWORD", default_value = "admin-pass-123", hide_env_values = true)]
    admin_password: String,
    #[arg(long, value_enum, default_value_t = Scenario::Uniform)]
    scenario: Scenario,
    /// Cards to create (default 10000; 2 for `hot`).
    #[arg(long)]
    cards: Option<usize>,
    /// Card owners: 0 = the admin itself, N = N users created through the admin API (cards round-robin).
    #[arg(long, default_value_t = 0)]
    users: usize,
    /// Reuse card ids from this file when it holds enough (no new cards, no funding); written after setup.
    #[arg(long)]
    cards_file: Option<PathBuf>,
    /// Concurrent requests during setup.
    #[arg(long, default_value_t = 32)]
    setup_concurrency: usize,
    /// Top-up per card during setup (minor units; one top-up each, at most --max-topup).
    #[arg(long, default_value_t = 10_000_000_000)]
    fund_amount: i64,
    /// Largest single top-up the server accepts ([money] max_amount).
    #[arg(long, default_value_t = 100_000_000_000)]
    max_topup: i64,
    /// Top-up method used for funding.
    #[arg(long, default_value = "ovo")]
    method: String,
    /// Run length, e.g. 30s, 2m, 500ms (ignored when --requests is given without --duration).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many transfers.
    #[arg(long)]
    requests: Option<u64>,
    /// Untimed warm-up before the measured run (same scenario).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    warmup: Duration,
    /// Concurrent workers (each one HTTP/1.1 keep-alive connection).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Target requests/second (open loop, latency from each request's scheduled send time).
    #[arg(long)]
    rate: Option<f64>,
    /// Zipf exponent for `--scenario zipf`.
    #[arg(long, default_value_t = 1.1)]
    zipf_s: f64,
    /// Transfer amount (minor units; the platform minimum is 50000).
    #[arg(long, default_value_t = 50_000)]
    amount: i64,
    /// Per-request timeout.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Tokio worker threads of the generator (keep it small: it shares the machine with payd).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Skip `payd verify` at the end.
    #[arg(long)]
    no_verify: bool,
    /// Command run (via `sh -c`) instead of `<dir of payd-load>/payd verify`.
    #[arg(long)]
    verify_cmd: Option<String>,
    /// Also run pgbench (TPC-B, -M prepared) on the same server and print transfers/s ÷ tps.
    #[arg(long)]
    pgbench: bool,
    /// PostgreSQL server for pgbench (a URL without database).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pgbench_server: String,
    #[arg(long, default_value = "payd_pgbench")]
    pgbench_db: String,
    #[arg(long, default_value_t = 16)]
    pgbench_scale: u32,
    #[arg(long, default_value_t = 16)]
    pgbench_clients: u32,
    #[arg(long, default_value_t = 2)]
    pgbench_threads: u32,
    /// pgbench run length (default: the scenario's --duration, else 30s).
    #[arg(long, value_parser = parse_duration)]
    pgbench_duration: Option<Duration>,
    /// Re-initialise the pgbench tables even when they exist at the right scale.
    #[arg(long)]
    pgbench_reinit: bool,
    /// pid of the payd server: its VmRSS / VmHWM are read at the end.
    #[arg(long)]
    pid: Option<u32>,
    /// Print a machine-readable JSON summary (on stdout; progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// RNG seed (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Share (0..1) of requests sent twice at once with the same Idempotency-Key and body (a client
    /// retrying while its first attempt still runs). Both answers must agree; throughput counts each
    /// operation once.
    #[arg(long, default_value_t = 0.0)]
    retry_share: f64,
    /// Before the run, load this many prior operations straight into payd's database (one SQL
    /// statement per table, generated server-side), then ANALYZE. In the merchant scenario they are
    /// payments into the run's merchant; otherwise transfers between two history accounts.
    #[arg(long, default_value_t = 0)]
    history: u64,
    /// payd's database, for --history.
    #[arg(long, env = "PAYD_DATABASE__URL", default_value = "postgres://postgres@127.0.0.1:5432/payd")]
    database_url: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len()));
    let v: f64 = num.parse().map_err(|_| format!("bad duration `{s}` (e.g. 30s, 2m, 500ms)"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}` (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

macro_rules! info {
    ($($t:tt)*) => { eprintln!("payd-load: {}", format_args!($($t)*)) };
}

// ------------------------------------------------------------------------------------ HTTP helpers

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> anyhow::Result<(u16, Value)> {
        let mut req = self.client.post(self.url(path)).header("authorization", &self.auth).json(body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.with_context(|| format!("POST {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

async fn login(client: &reqwest::Client, base: &str, email: &str, password: &str) -> anyhow::Result<String> {
    let resp = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .with_context(|| format!("cannot reach payd at {base}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status != 200 {
        bail!("admin login as {email} failed: HTTP {status}: {body}");
    }
    body["access_token"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("login answer without access_token: {body}"))
}

async fn route_exists(client: &reqwest::Client, base: &str, route: &str) -> anyhow::Result<bool> {
    let doc: Value = client
        .get(format!("{base}/api-docs/openapi.json"))
        .send()
        .await
        .context("GET /api-docs/openapi.json")?
        .json()
        .await
        .context("OpenAPI document is not JSON")?;
    Ok(doc["paths"].get(route).is_some())
}

fn error_code(body: &Value) -> String {
    body["error"]["code"].as_str().unwrap_or("-").to_owned()
}

// ------------------------------------------------------------------------------------------- setup

async fn create_users(api: &Api, n: usize, run_id: &str, conc: usize) -> anyhow::Result<Vec<i64>> {
    let results: Vec<anyhow::Result<i64>> = stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let email = format!("load-{run_id}-{i}@payd.local");
            async move {
                let body = json!({"first_name": "Load", "last_name": format!("User{i}"), "email": email,
                                  "password": "load-pass-123", "email_verified": true});
                let (s, b) = api.post("/api/v1/users", &body, None).await?;
                if s != 201 {
                    bail!("create user {email}: HTTP {s}: {b}");
                }
                b["id"].as_i64().ok_or_else(|| anyhow!("user answer without id: {b}"))
            }
        })
        .buffer_unordered(conc.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Tops `card` up by `total` in chunks of at most `max_topup`.
async fn fund(api: &Api, card: i64, total: i64, max_topup: i64, method: &str, run_id: &str) -> anyhow::Result<()> {
    let mut left = total;
    let mut n = 0u32;
    while left > 0 {
        let chunk = left.min(max_topup);
        let key = format!("load-fund-{run_id}-{card}-{n}");
        let body = json!({"card_id": card, "amount": chunk, "method": method});
        let (s, b) = api.post("/api/v1/topups", &body, Some(&key)).await?;
        if s != 201 {
            bail!("top-up of card {card}: HTTP {s}: {b}");
        }
        left -= chunk;
        n += 1;
    }
    Ok(())
}

async fn create_cards(
    api: &Api,
    owners: &[i64],
    n: usize,
    funding: &dyn Fn(usize) -> i64,
    args: &Args,
    run_id: &str,
) -> anyhow::Result<Vec<i64>> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let results: Vec<anyhow::Result<(usize, i64)>> = stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let owner = if owners.is_empty() { None } else { owners.get(i % owners.len()).copied() };
            let amount = funding(i);
            let done = Arc::clone(&done);
            let method = args.method.clone();
            let max_topup = args.max_topup;
            async move {
                let mut body = json!({"card_type": "debit", "brand": "visa", "label": "payd-load"});
                if let Some(u) = owner {
                    body["user_id"] = json!(u);
                }
                let (s, b) = api.post("/api/v1/cards", &body, None).await?;
                if s != 201 {
                    bail!("issue card: HTTP {s}: {b}");
                }
                let id = b["card"]["id"].as_i64().ok_or_else(|| anyhow!("card answer without id: {b}"))?;
                fund(&api, id, amount, max_topup, &method, run_id).await?;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % 1000 == 0 {
                    info!("setup: {d}/{n} cards issued and funded ({:.1}s)", started.elapsed().as_secs_f64());
                }
                Ok((i, id))
            }
        })
        .buffer_unordered(args.setup_concurrency.max(1))
        .collect()
        .await;
    let mut ids: Vec<(usize, i64)> = results.into_iter().collect::<anyhow::Result<_>>()?;
    ids.sort_unstable();
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

fn read_cards_file(path: &std::path::Path) -> Option<Vec<i64>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.split_whitespace().filter_map(|w| w.parse().ok()).collect())
}

// ------------------------------------------------------------------------------------------ run

/// Picks (source, destination) indexes into the card list.
#[derive(Clone)]
enum Picker {
    Uniform(usize),
    Zipf { dist: rand_distr::Zipf<f64>, perm: Arc<Vec<usize>> },
    Hot,
}

impl Picker {
    fn pick<R: Rng>(&self, rng: &mut R) -> (usize, usize) {
        match self {
            Self::Uniform(n) => {
                let a = rng.gen_range(0..*n);
                let mut b = rng.gen_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                (a, b)
            }
            Self::Zipf { dist, perm } => {
                let draw = |rng: &mut R| {
                    // Zipf yields 1..=n as f64; the rank maps to a shuffled card index.
                    let rank = dist.sample(rng);
                    let r = format!("{rank:.0}").parse::<usize>().unwrap_or(1).saturating_sub(1);
                    perm.get(r).copied().unwrap_or(0)
                };
                let a = draw(rng);
                let mut b = draw(rng);
                while b == a {
                    b = draw(rng);
                }
                (a, b)
            }
            Self::Hot => (0, 1),
        }
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    status: BTreeMap<String, u64>,
    codes: BTreeMap<String, u64>,
    /// Requests sent twice at once (`--retry-share`).
    retried: u64,
    /// Of those, answers whose two replies disagreed (status or operation id).
    retry_mismatches: u64,
}

struct Outcome {
    hist: Histogram<u64>,
    tally: Tally,
    elapsed: Duration,
    sent: u64,
}

struct RunCfg {
    api: Api,
    cards: Arc<Vec<i64>>,
    picker: Picker,
    amount: i64,
    connections: usize,
    rate: Option<f64>,
    duration: Option<Duration>,
    requests: Option<u64>,
    run_id: String,
    seed: u64,
    /// `merchant` scenario: payments into one merchant instead of transfers.
    merchant: Option<Arc<MerchantDriver>>,
    retry_share: f64,
    scenario: Scenario,
    /// `--transport grpc`: the gRPC endpoint.
    grpc: Option<String>,
}

/// What the `merchant` scenario charges: one merchant's API key and the paying cards' credentials.
struct MerchantDriver {
    api_key: String,
    cards: Vec<CardSecret>,
}

/// A card's credentials, known only from its issue response.
struct CardSecret {
    number: String,
    cvv: String,
    month: i64,
    year: i64,
}

/// Issues `n` funded cards and keeps their credentials (the number and CVV are shown only at issue).
async fn create_paying_cards(api: &Api, n: usize, args: &Args, run_id: &str) -> anyhow::Result<Vec<CardSecret>> {
    let results: Vec<anyhow::Result<CardSecret>> = stream::iter(0..n)
        .map(|_| {
            let api = api.clone();
            let (amount, max_topup, method) = (args.fund_amount, args.max_topup, args.method.clone());
            async move {
                let (s, b) = api
                    .post("/api/v1/cards", &json!({"card_type": "debit", "brand": "visa", "label": "payd-load"}), None)
                    .await?;
                if s != 201 {
                    bail!("issue card: HTTP {s}: {b}");
                }
                let id = b["card"]["id"].as_i64().ok_or_else(|| anyhow!("card answer without id: {b}"))?;
                fund(&api, id, amount, max_topup, &method, run_id).await?;
                Ok(CardSecret {
                    number: b["card_number"].as_str().unwrap_or_default().to_owned(),
                    cvv: b["cvv"].as_str().unwrap_or_default().to_owned(),
                    month: b["card"]["expiry_month"].as_i64().unwrap_or(1),
                    year: b["card"]["expiry_year"].as_i64().unwrap_or(2030),
                })
            }
        })
        .buffer_unordered(args.setup_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Onboards a merchant owned by the admin (apply, documents, review, approval) and creates an API key.
async fn create_merchant(api: &Api, run_id: &str) -> anyhow::Result<String> {
    let (s, m) = api
        .post("/api/v1/merchants", &json!({"business_name": format!("Load Shop {run_id}"), "contact_email": "load@payd.local", "category": "retail"}), None)
        .await?;
    if s != 201 {
        bail!("apply as merchant: HTTP {s}: {m}");
    }
    let id = m["id"].as_i64().ok_or_else(|| anyhow!("merchant answer without id: {m}"))?;
    for doc_type in ["business_licence", "owner_identity", "tax_id", "bank_statement"] {
        let part = reqwest::multipart::Part::bytes(
            b"%PDF-1.4
%%EOF
"
            .to_vec(),
        )
        .file_name("doc.pdf")
        .mime_str("application/pdf")?;
        let form = reqwest::multipart::Form::new().text("doc_type", doc_type).part("file", part);
        let resp = api
            .client
            .post(api.url(&format!("/api/v1/merchants/{id}/documents")))
            .header("authorization", &api.auth)
            .multipart(form)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let doc: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 201 {
            bail!("upload {doc_type}: HTTP {status}: {doc}");
        }
        let (s, b) = api
            .post(
                &format!("/api/v1/merchants/{id}/documents/{}/review", doc["id"]),
                &json!({"decision": "approve"}),
                None,
            )
            .await?;
        if s != 200 {
            bail!("review {doc_type}: HTTP {s}: {b}");
        }
    }
    let (s, b) = api.post(&format!("/api/v1/merchants/{id}/approve"), &json!({}), None).await?;
    if s != 200 {
        bail!("approve merchant: HTTP {s}: {b}");
    }
    let (s, k) = api.post(&format!("/api/v1/merchants/{id}/api-keys"), &json!({"label": "payd-load"}), None).await?;
    if s != 201 {
        bail!("create API key: HTTP {s}: {k}");
    }
    info!("setup: merchant {id} approved");
    k["api_key"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("key answer without api_key: {k}"))
}

fn new_hist() -> anyhow::Result<Histogram<u64>> {
    // Microseconds, 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| anyhow!("histogram: {e}"))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

async fn run_scenario(cfg: Arc<RunCfg>) -> anyhow::Result<Outcome> {
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let mut tasks = Vec::with_capacity(cfg.connections);
    for w in 0..cfg.connections {
        let (cfg, next, stop) = (Arc::clone(&cfg), Arc::clone(&next), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist()?;
            let mut tally = Tally::default();
            let mut rng =
                rand::rngs::StdRng::seed_from_u64(cfg.seed ^ u64::try_from(w).unwrap_or(0).wrapping_mul(0x9E37_79B9));
            let grpc = match &cfg.grpc {
                Some(url) => Some(
                    tonic::transport::Endpoint::from_shared(url.clone())?
                        .tcp_nodelay(true)
                        .connect()
                        .await
                        .with_context(|| format!("gRPC connect {url}"))?,
                ),
                None => None,
            };
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if cfg.requests.is_some_and(|n| seq >= n) {
                    break;
                }
                // Open loop: request `seq` is due at start + seq/rate; latency counts from then.
                let due = match cfg.rate {
                    Some(r) => {
                        let at = start + Duration::from_secs_f64(f64::from(u32::try_from(seq).unwrap_or(u32::MAX)) / r);
                        if deadline.is_some_and(|d| at >= d) {
                            break;
                        }
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => {
                        let now = Instant::now();
                        if deadline.is_some_and(|d| now >= d) {
                            break;
                        }
                        now
                    }
                };
                let key = format!("load-{}-{seq}", cfg.run_id);
                let read = match cfg.scenario {
                    Scenario::Reads => true,
                    Scenario::Mixed => rng.gen_range(0..11u32) != 0,
                    _ => false,
                };
                if read {
                    let card = cfg.cards.get(cfg.picker.pick(&mut rng).0).copied().unwrap_or(0);
                    let (label, path) = read_request(&mut rng, card);
                    let res =
                        send_read(cfg.api.client.get(cfg.api.url(&path)).header("authorization", &cfg.api.auth)).await;
                    let _ = hist.record(micros(due.elapsed()));
                    match res {
                        Ok((200, _)) => {
                            tally.ok += 1;
                            *tally.status.entry(format!("{label} 200")).or_default() += 1;
                        }
                        Ok((status, body)) => {
                            *tally.status.entry(format!("{label} {status}")).or_default() += 1;
                            *tally.codes.entry(format!("{label} {status} {}", error_code(&body))).or_default() += 1;
                        }
                        Err(e) => {
                            *tally.status.entry(format!("{label} transport")).or_default() += 1;
                            *tally.codes.entry(format!("{label}: {e}")).or_default() += 1;
                        }
                    }
                    continue;
                }
                if let Some(channel) = &grpc {
                    let res = if cfg.retry_share > 0.0 && rng.gen_bool(cfg.retry_share.min(1.0)) {
                        // Both copies draw the same cards: the same request, sent twice at once.
                        let mut twin = rng.clone();
                        let (a, b) = tokio::join!(
                            send_grpc(&cfg, channel.clone(), &mut twin, &key),
                            send_grpc(&cfg, channel.clone(), &mut rng, &key)
                        );
                        tally.retried += 1;
                        if a != b {
                            tally.retry_mismatches += 1;
                        }
                        a
                    } else {
                        send_grpc(&cfg, channel.clone(), &mut rng, &key).await
                    };
                    let _ = hist.record(micros(due.elapsed()));
                    match res {
                        Ok(_) => {
                            tally.ok += 1;
                            *tally.status.entry("OK".into()).or_default() += 1;
                        }
                        Err((code, reason)) => {
                            *tally.status.entry(code.clone()).or_default() += 1;
                            *tally.codes.entry(format!("{code} {reason}")).or_default() += 1;
                        }
                    }
                    continue;
                }
                let request = match &cfg.merchant {
                    Some(m) => {
                        let c = &m.cards[rng.gen_range(0..m.cards.len())];
                        let body = format!(
                            r#"{{"card_number":"{}","expiry_month":{},"expiry_year":{},"cvv":"{}","amount":{},"method":"visa","order_ref":"{key}"}}"#,
                            c.number, c.month, c.year, c.cvv, cfg.amount
                        );
                        cfg.api.client.post(cfg.api.url("/api/v1/payments")).header("x-api-key", &m.api_key).body(body)
                    }
                    None => {
                        let (a, b) = cfg.picker.pick(&mut rng);
                        let (from, to) = (cfg.cards.get(a).copied().unwrap_or(0), cfg.cards.get(b).copied().unwrap_or(0));
                        let body = format!(r#"{{"from_card_id":{from},"to_card_id":{to},"amount":{}}}"#, cfg.amount);
                        cfg.api.client.post(cfg.api.url("/api/v1/transfers")).header("authorization", &cfg.api.auth).body(body)
                    }
                };
                let request = request.header("content-type", "application/json").header("idempotency-key", key);
                let retry = if cfg.retry_share > 0.0 && rng.gen_bool(cfg.retry_share.min(1.0)) {
                    request.try_clone()
                } else {
                    None
                };
                let res = match retry {
                    None => send_once(request).await,
                    Some(copy) => {
                        let (a, b) = tokio::join!(send_once(request), send_once(copy));
                        tally.retried += 1;
                        let same = match (&a, &b) {
                            (Ok((sa, ba)), Ok((sb, bb))) => {
                                sa == sb && ba.get("id").or_else(|| ba.pointer("/operation/id")) == bb.get("id").or_else(|| bb.pointer("/operation/id"))
                            }
                            _ => false,
                        };
                        if !same {
                            tally.retry_mismatches += 1;
                        }
                        a
                    }
                };
                match res {
                    Ok((status, body)) => {
                        let _ = hist.record(micros(due.elapsed()));
                        *tally.status.entry(status.to_string()).or_default() += 1;
                        if status == 201 {
                            tally.ok += 1;
                        } else {
                            *tally.codes.entry(format!("{status} {}", error_code(&body))).or_default() += 1;
                        }
                    }
                    Err(e) => {
                        let _ = hist.record(micros(due.elapsed()));
                        let kind = if e.is_timeout() {
                            "timeout"
                        } else if e.is_connect() {
                            "connect"
                        } else {
                            "transport"
                        };
                        *tally.status.entry(kind.to_owned()).or_default() += 1;
                        *tally.codes.entry(format!("{kind}: {e}")).or_default() += 1;
                    }
                }
            }
            Ok::<_, anyhow::Error>((hist, tally))
        }));
    }
    // Progress once per 5 s.
    let progress = {
        let (next, stop) = (Arc::clone(&next), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut last = 0u64;
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let n = next.load(Ordering::Relaxed);
                info!("  {:>5.0}s  sent {n}  (~{}/s)", start.elapsed().as_secs_f64(), (n - last) / 5);
                last = n;
            }
        })
    };
    let mut hist = new_hist()?;
    let mut tally = Tally::default();
    for t in tasks {
        let (h, t) = t.await.map_err(|e| anyhow!("worker: {e}"))??;
        hist.add(&h).map_err(|e| anyhow!("histogram: {e}"))?;
        tally.ok += t.ok;
        tally.retried += t.retried;
        tally.retry_mismatches += t.retry_mismatches;
        for (k, v) in t.status {
            *tally.status.entry(k).or_default() += v;
        }
        for (k, v) in t.codes {
            *tally.codes.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    progress.abort();
    let sent = hist.len();
    Ok(Outcome { hist, tally, elapsed, sent })
}

/// Sends one read; its status, and its JSON body only when it is not a 200 (the generator shares the
/// cores with payd, so the answers it only counts are not parsed).
async fn send_read(request: reqwest::RequestBuilder) -> Result<(u16, Value), reqwest::Error> {
    let resp = request.send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    if status == 200 {
        return Ok((status, Value::Null));
    }
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Sends one money request over gRPC (the same draw of cards as HTTP): the operation id, or the
/// status code name and the ErrorInfo reason.
async fn send_grpc(
    cfg: &RunCfg,
    channel: tonic::transport::Channel,
    rng: &mut rand::rngs::StdRng,
    key: &str,
) -> Result<String, (String, String)> {
    use payd::grpc::proto;
    use tonic_types::StatusExt;
    let meta = |r: &mut tonic::metadata::MetadataMap, name: &'static str, value: &str| {
        if let Ok(v) = value.parse() {
            r.insert(name, v);
        }
    };
    let answer = match &cfg.merchant {
        Some(m) => {
            let c = &m.cards[rng.gen_range(0..m.cards.len())];
            let mut req = tonic::Request::new(proto::PayRequest {
                card_number: c.number.clone(),
                expiry_month: i32::try_from(c.month).unwrap_or(0),
                expiry_year: i32::try_from(c.year).unwrap_or(0),
                cvv: c.cvv.clone(),
                amount: cfg.amount,
                method: "visa".into(),
                order_ref: key.to_owned(),
                currency: String::new(),
            });
            meta(req.metadata_mut(), "x-api-key", &m.api_key);
            meta(req.metadata_mut(), "idempotency-key", key);
            proto::payments_client::PaymentsClient::new(channel).pay(req).await
        }
        None => {
            let (a, b) = cfg.picker.pick(rng);
            let mut req = tonic::Request::new(proto::TransferRequest {
                from_card_id: cfg.cards.get(a).copied().unwrap_or(0),
                to_card_id: cfg.cards.get(b).copied().unwrap_or(0),
                amount: cfg.amount,
                currency: String::new(),
                to_card_number: String::new(),
            });
            meta(req.metadata_mut(), "authorization", &cfg.api.auth);
            meta(req.metadata_mut(), "idempotency-key", key);
            proto::ledger_client::LedgerClient::new(channel).transfer(req).await
        }
    };
    match answer {
        Ok(op) => Ok(op.into_inner().id),
        Err(s) => {
            let reason = s.get_details_error_info().map_or_else(|| s.message().to_owned(), |i| i.reason);
            Err((format!("{:?}", s.code()), reason))
        }
    }
}

/// Sends one request; its status and JSON body (Null when not JSON).
async fn send_once(request: reqwest::RequestBuilder) -> Result<(u16, Value), reqwest::Error> {
    let resp = request.send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Loads `n` prior operations into payd's database server-side: balanced two-posting entries with
/// running balances, an idempotency row each, between two unbounded history accounts (so `payd
/// verify` still holds); in the merchant scenario they are successful payments into the newest
/// merchant (the run's own) with unique order references. Then ANALYZE, as autovacuum would.
fn load_history(url: &str, n: u64, merchant: bool) -> anyhow::Result<()> {
    let (server, db) = url.rsplit_once('/').ok_or_else(|| anyhow!("--database-url needs a database name"))?;
    let tag = format!("{:x}", rand::random::<u32>());
    let (kind, merchant_id) =
        if merchant { ("payment", "(SELECT max(id) FROM merchants)") } else { ("transfer", "NULL") };
    let sql = format!(
        "BEGIN;
INSERT INTO accounts (kind, code, currency, balance) SELECT 'funding', 'history-src-{tag}', currency, 0 FROM accounts WHERE code IS NOT NULL LIMIT 1;
INSERT INTO accounts (kind, code, currency, balance) SELECT 'settlement', 'history-dst-{tag}', currency, 0 FROM accounts WHERE code IS NOT NULL LIMIT 1;
CREATE TEMP TABLE h ON COMMIT DROP AS
  SELECT g AS n, gen_random_uuid() AS id, 50000 + (g % 1000) * 100 AS amount,
         now() - make_interval(secs => ({n} - g)) AS at
  FROM generate_series(1, {n}) g;
INSERT INTO operations (id, kind, status, amount, currency, method, debit_account_id, credit_account_id, created_at, merchant_id, order_ref)
  SELECT h.id, '{kind}', 'success', h.amount, a.currency, 'visa', a.id, b.id, h.at, {merchant_id}, 'hist-{tag}-' || h.n
  FROM h, accounts a, accounts b WHERE a.code = 'history-src-{tag}' AND b.code = 'history-dst-{tag}' ORDER BY h.n;
INSERT INTO postings (operation_id, account_id, amount, balance_after, created_at)
  SELECT id, account_id, amount, balance_after, at FROM (
    SELECT h.n, 0 AS side, h.id, a.id AS account_id, -h.amount AS amount, -sum(h.amount) OVER (ORDER BY h.n) AS balance_after, h.at
      FROM h, accounts a WHERE a.code = 'history-src-{tag}'
    UNION ALL
    SELECT h.n, 1, h.id, b.id, h.amount, sum(h.amount) OVER (ORDER BY h.n), h.at
      FROM h, accounts b WHERE b.code = 'history-dst-{tag}') p ORDER BY n, side;
INSERT INTO idempotency_keys (scope, key, request_hash, operation_id, response_status, response_body)
  SELECT 'history', '{tag}-' || h.n, 'history', h.id, 201, '{{}}'::jsonb FROM h;
UPDATE accounts SET balance = -(SELECT sum(amount) FROM h), version = version + 1 WHERE code = 'history-src-{tag}';
UPDATE accounts SET balance = (SELECT sum(amount) FROM h), version = version + 1 WHERE code = 'history-dst-{tag}';
COMMIT;
ANALYZE;"
    );
    let started = Instant::now();
    let out = Command::new("psql")
        .arg(format!("{server}/{db}"))
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running psql (install postgresql-client)")
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(sql.as_bytes()).context("writing to psql")?;
            }
            child.wait_with_output().context("waiting for psql")
        })?;
    if !out.status.success() {
        bail!("loading history: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    info!("history: {n} prior {kind}s loaded and analysed in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

// ------------------------------------------------------------------------------ verify, pgbench, RSS

struct VerifyResult {
    ok: bool,
    exit: Option<i32>,
    output: String,
}

fn run_verify(args: &Args) -> anyhow::Result<VerifyResult> {
    let mut cmd = match &args.verify_cmd {
        Some(c) => {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(c);
            cmd
        }
        None => {
            let exe = std::env::current_exe().context("current_exe")?;
            let dir = exe.parent().ok_or_else(|| anyhow!("payd-load has no parent directory"))?;
            let payd = dir.join("payd");
            if !payd.exists() {
                bail!("{} not found (build it, or pass --verify-cmd / --no-verify)", payd.display());
            }
            let mut cmd = Command::new(payd);
            cmd.arg("verify");
            cmd
        }
    };
    let out = cmd.output().context("running payd verify")?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(VerifyResult { ok: out.status.success(), exit: out.status.code(), output: output.trim().to_owned() })
}

fn psql(server: &str, db: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .arg(format!("{server}/{db}"))
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("running psql (install postgresql-client)")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Parses `tps = 1234.5 (without initial connection time)` (PostgreSQL 14+) or
/// `tps = 1234.5 (excluding connections establishing)` (older).
fn parse_tps(out: &str) -> Option<f64> {
    out.lines()
        .filter(|l| l.starts_with("tps = "))
        .find(|l| l.contains("without initial connection") || l.contains("excluding connections"))
        .or_else(|| out.lines().find(|l| l.starts_with("tps = ")))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn run_pgbench(args: &Args, secs: u64) -> anyhow::Result<(f64, String)> {
    let db = &args.pgbench_db;
    if !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("--pgbench-db must be a plain identifier");
    }
    let exists = psql(&args.pgbench_server, "postgres", &format!("SELECT 1 FROM pg_database WHERE datname = '{db}'"))?;
    if exists.is_empty() {
        info!("pgbench: creating database {db}");
        psql(&args.pgbench_server, "postgres", &format!("CREATE DATABASE {db}"))?;
    }
    let url = format!("{}/{db}", args.pgbench_server);
    let branches = psql(&args.pgbench_server, db, "SELECT count(*) FROM pgbench_branches").unwrap_or_default();
    if args.pgbench_reinit || branches != args.pgbench_scale.to_string() {
        info!("pgbench: pgbench -i -s {} {db}", args.pgbench_scale);
        let out = Command::new("pgbench")
            .args(["-i", "-q", "-s", &args.pgbench_scale.to_string(), &url])
            .output()
            .context("running pgbench (install postgresql-contrib / postgresql-client)")?;
        if !out.status.success() {
            bail!("pgbench -i: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    let cmdline =
        format!("pgbench -M prepared -c {} -j {} -T {secs} {url}", args.pgbench_clients, args.pgbench_threads);
    info!("pgbench: {cmdline}");
    let out = Command::new("pgbench")
        .args([
            "-M",
            "prepared",
            "-c",
            &args.pgbench_clients.to_string(),
            "-j",
            &args.pgbench_threads.to_string(),
            "-T",
            &secs.to_string(),
            &url,
        ])
        .output()
        .context("running pgbench")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("pgbench failed: {text}");
    }
    let tps = parse_tps(&text).ok_or_else(|| anyhow!("no tps line in pgbench output: {text}"))?;
    Ok((tps, cmdline))
}

fn read_rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:").unwrap_or(0)))
}

// ------------------------------------------------------------------------------------------ main

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("payd-load: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("payd-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn ms(us: u64) -> f64 {
    // Microseconds to milliseconds for display.
    f64::from(u32::try_from(us).unwrap_or(u32::MAX)) / 1000.0
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let base = args.base_url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections.max(args.setup_concurrency))
        .tcp_nodelay(true)
        .timeout(args.timeout)
        .build()?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let run_id = format!("{:016x}", rand::random::<u64>());

    if args.scenario == Scenario::Merchant && !route_exists(&client, &base, "/api/v1/payments").await? {
        bail!(
            "scenario `merchant` is not available until merchant payments exist \
             (no /api/v1/payments in {base}/api-docs/openapi.json)"
        );
    }
    if args.duration.is_none() && args.requests.is_none() {
        bail!("give --duration (e.g. 30s) and/or --requests N");
    }
    if args.transport == Transport::Grpc && matches!(args.scenario, Scenario::Reads | Scenario::Mixed) {
        bail!("--transport grpc drives the transfer scenarios and `merchant`, not `{:?}`", args.scenario);
    }
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be > 0");
    }

    let token = login(&client, &base, &args.admin_email, &args.admin_password).await?;
    let api = Api { client: client.clone(), base: base.clone(), auth: format!("Bearer {token}") };

    // ---- setup
    let n_cards = args.cards.unwrap_or(if args.scenario == Scenario::Hot { 2 } else { 10_000 }).max(2);
    // Enough on the hot source for the whole run: requests, or rate × duration, or 5,000/s × duration (×1.5).
    let expected = args.requests.unwrap_or_else(|| {
        let secs = args.duration.unwrap_or(Duration::from_secs(30)).as_secs_f64() + args.warmup.as_secs_f64();
        let rate = args.rate.unwrap_or(5_000.0);
        format!("{:.0}", secs * rate * 1.5).parse().unwrap_or(1_000_000)
    });
    let hot_fund = i64::try_from(expected).unwrap_or(i64::MAX / 4).saturating_mul(args.amount).max(args.fund_amount);
    let fund_for = |i: usize| if args.scenario == Scenario::Hot && i == 0 { hot_fund } else { args.fund_amount };

    let merchant = if args.scenario == Scenario::Merchant {
        info!("setup: onboarding a merchant and issuing {n_cards} paying cards");
        let api_key = create_merchant(&api, &run_id).await?;
        let cards = create_paying_cards(&api, n_cards, &args, &run_id).await?;
        Some(Arc::new(MerchantDriver { api_key, cards }))
    } else {
        None
    };
    let reused = args.cards_file.as_deref().and_then(read_cards_file).filter(|c| c.len() >= n_cards);
    let setup_started = Instant::now();
    let cards: Vec<i64> = if merchant.is_some() {
        // The merchant scenario pays with the credential cards issued above.
        vec![0, 0]
    } else if let Some(mut c) = reused {
        c.truncate(n_cards);
        info!(
            "setup: reusing {} cards from {}",
            c.len(),
            args.cards_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        );
        if args.scenario == Scenario::Hot {
            if let Some(src) = c.first() {
                info!("setup: topping up hot source card {src} by {hot_fund}");
                fund(&api, *src, hot_fund, args.max_topup, &args.method, &run_id).await?;
            }
        }
        c
    } else {
        let owners = if args.users > 0 {
            info!("setup: creating {} users", args.users);
            create_users(&api, args.users, &run_id, args.setup_concurrency).await?
        } else {
            Vec::new()
        };
        info!(
            "setup: issuing and funding {n_cards} cards ({} concurrent, {} each)",
            args.setup_concurrency, args.fund_amount
        );
        let c = create_cards(&api, &owners, n_cards, &fund_for, &args, &run_id).await?;
        if let Some(p) = &args.cards_file {
            let text: Vec<String> = c.iter().map(i64::to_string).collect();
            std::fs::write(p, text.join("\n")).with_context(|| format!("writing {}", p.display()))?;
        }
        c
    };
    let setup_secs = setup_started.elapsed().as_secs_f64();
    info!("setup: {} cards ready in {setup_secs:.1}s", cards.len());

    let picker = match args.scenario {
        Scenario::Uniform | Scenario::Reads | Scenario::Mixed => Picker::Uniform(cards.len()),
        Scenario::Zipf => {
            let mut perm: Vec<usize> = (0..cards.len()).collect();
            perm.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let n = u64::try_from(cards.len()).unwrap_or(u64::MAX);
            let dist = rand_distr::Zipf::new(n, args.zipf_s).map_err(|e| anyhow!("zipf: {e}"))?;
            Picker::Zipf { dist, perm: Arc::new(perm) }
        }
        Scenario::Hot | Scenario::Merchant => Picker::Hot,
    };
    let cards = Arc::new(cards);
    let mk = |duration: Option<Duration>, requests: Option<u64>, run_id: String| {
        Arc::new(RunCfg {
            api: api.clone(),
            cards: Arc::clone(&cards),
            picker: picker.clone(),
            amount: args.amount,
            connections: args.connections.max(1),
            rate: args.rate,
            duration,
            requests,
            run_id,
            seed,
            merchant: merchant.clone(),
            retry_share: args.retry_share,
            scenario: args.scenario,
            grpc: (args.transport == Transport::Grpc).then(|| args.grpc_url.clone()),
        })
    };
    if args.history > 0 {
        info!(
            "history: loading {} prior operations into {}",
            args.history,
            args.database_url.rsplit('/').next().unwrap_or("")
        );
        load_history(&args.database_url, args.history, merchant.is_some())?;
    }
    if !args.warmup.is_zero() {
        info!("warm-up: {:.1}s", args.warmup.as_secs_f64());
        run_scenario(mk(Some(args.warmup), None, format!("{run_id}w"))).await?;
    }
    let mode = match args.rate {
        Some(r) => format!("open loop at {r}/s"),
        None => "closed loop".to_owned(),
    };
    info!(
        "run: {:?} over {} cards, {} connections, {mode}, {}",
        args.scenario,
        cards.len(),
        args.connections,
        match (args.duration, args.requests) {
            (Some(d), Some(n)) => format!("{:.1}s or {n} requests", d.as_secs_f64()),
            (Some(d), None) => format!("{:.1}s", d.as_secs_f64()),
            (None, Some(n)) => format!("{n} requests"),
            (None, None) => String::new(),
        }
    );
    let out = run_scenario(mk(args.duration, args.requests, run_id.clone())).await?;
    let secs = out.elapsed.as_secs_f64();
    let ok_per_s = f64::from(u32::try_from(out.tally.ok).unwrap_or(u32::MAX)) / secs;
    let sent_per_s = f64::from(u32::try_from(out.sent).unwrap_or(u32::MAX)) / secs;
    let (p50, p95, p99, p999, max) = (
        out.hist.value_at_quantile(0.50),
        out.hist.value_at_quantile(0.95),
        out.hist.value_at_quantile(0.99),
        out.hist.value_at_quantile(0.999),
        out.hist.max(),
    );

    let verify = if args.no_verify {
        None
    } else {
        info!("verify: running payd verify");
        Some(run_verify(&args))
    };
    let pgbench = if args.pgbench {
        let secs = args.pgbench_duration.or(args.duration).unwrap_or(Duration::from_secs(30)).as_secs().max(1);
        Some(run_pgbench(&args, secs))
    } else {
        None
    };
    let rss = args.pid.and_then(read_rss);

    // ---- report
    let errors: u64 = out.sent - out.tally.ok;
    if args.json {
        let v = verify.as_ref().map(|v| match v {
            Ok(v) => json!({"ok": v.ok, "exit": v.exit, "output": v.output}),
            Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
        });
        let pg = pgbench.as_ref().map(|p| match p {
            Ok((tps, cmd)) => json!({"tps": tps, "command": cmd, "ratio": ok_per_s / tps}),
            Err(e) => json!({"error": format!("{e:#}")}),
        });
        let summary = json!({
            "scenario": format!("{:?}", args.scenario).to_lowercase(),
            "cards": cards.len(),
            "connections": args.connections,
            "rate": args.rate,
            "setup_secs": setup_secs,
            "elapsed_secs": secs,
            "sent": out.sent,
            "ok": out.tally.ok,
            "errors": errors,
            "throughput_ok_per_sec": ok_per_s,
            "sent_per_sec": sent_per_s,
            "latency_ms": {"p50": ms(p50), "p95": ms(p95), "p99": ms(p99), "p999": ms(p999), "max": ms(max),
                           "mean": out.hist.mean() / 1000.0},
            "status": out.tally.status,
            "errors_by_code": out.tally.codes,
            "retried": out.tally.retried,
            "retry_mismatches": out.tally.retry_mismatches,
            "verify": v,
            "pgbench": pg,
            "rss_kb": rss.map(|r| r.0),
            "rss_peak_kb": rss.map(|r| r.1),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "scenario      {:?} over {} cards, {} connections, {mode}",
            args.scenario,
            cards.len(),
            args.connections
        );
        println!("elapsed       {secs:.2}s  (setup {setup_secs:.1}s)");
        println!("requests      {} sent, {} ok (201), {errors} not ok", out.sent, out.tally.ok);
        if out.tally.retried > 0 {
            println!(
                "retries       {} sent twice at once, {} answered differently",
                out.tally.retried, out.tally.retry_mismatches
            );
        }
        let what = match args.scenario {
            Scenario::Reads | Scenario::Mixed => "successful requests/s (200 reads + 201 transfers)",
            _ => "successful transfers/s",
        };
        println!("throughput    {ok_per_s:.0} {what}  ({sent_per_s:.0} sent/s)");
        println!(
            "latency ms    p50 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
            ms(p50),
            ms(p95),
            ms(p99),
            ms(p999),
            ms(max),
            out.hist.mean() / 1000.0
        );
        let statuses: Vec<String> = out.tally.status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("by status     {}", statuses.join(", "));
        for (k, v) in &out.tally.codes {
            println!("  error       {k}: {v}");
        }
        match &verify {
            None => println!("verify        skipped"),
            Some(Ok(v)) => {
                println!("verify        {} (exit {})", if v.ok { "CLEAN" } else { "FAILED" }, v.exit.unwrap_or(-1));
                for l in v.output.lines() {
                    println!("  | {l}");
                }
            }
            Some(Err(e)) => println!("verify        could not run: {e:#}"),
        }
        match &pgbench {
            None => {}
            Some(Ok((tps, cmd))) => {
                println!("pgbench       {tps:.0} tps ({cmd})");
                println!("ratio         {:.3} (successful transfers/s ÷ pgbench tps)", ok_per_s / tps);
            }
            Some(Err(e)) => println!("pgbench       failed: {e:#}"),
        }
        if let Some(pid) = args.pid {
            match rss {
                Some((rss, hwm)) => println!("payd rss      {:.1} MiB (peak {:.1} MiB, pid {pid})", kib(rss), kib(hwm)),
                None => println!("payd rss      pid {pid}: /proc/{pid}/status unreadable"),
            }
        }
    }
    let verify_failed = matches!(&verify, Some(Ok(v)) if !v.ok) || matches!(&verify, Some(Err(_)));
    Ok(if verify_failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn kib(k: u64) -> f64 {
    f64::from(u32::try_from(k).unwrap_or(u32::MAX)) / 1024.0
}
