//! Typed configuration: `config/default.toml` → `config/<env>.toml` → `PAYD_*` environment variables, validated once.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// The defaults ship inside the binary so `payd` runs from any directory.
const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// The development JWT secret from `default.toml`; production refuses to start with it.
const DEV_JWT_SECRET: &str = "dev-only-secret-change-me-dev-only-secret-change-me";

/// A string that never prints: `Debug`/`Display` show `***`.
#[derive(Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    pub environment: Environment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub mail: MailSettings,
    pub telemetry: TelemetrySettings,
    pub money: MoneySettings,
    pub ledger: LedgerSettings,
    pub cards: CardSettings,
    pub merchants: MerchantSettings,
    pub events: EventSettings,
    pub webhooks: WebhookSettings,
    #[serde(default)]
    pub idempotency: IdempotencySettings,
    #[serde(default)]
    pub rate_limits: RateLimitSettings,
    pub stats: StatsSettings,
    #[serde(default)]
    pub notifications: NotificationSettings,
    #[serde(default)]
    pub grpc: GrpcSettings,
}

/// The gRPC API (`src/grpc`): served by `payd serve` next to the HTTP API, on the same state.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct GrpcSettings {
    pub enabled: bool,
    /// 0 picks a free port (the tests).
    pub port: u16,
    /// PEM certificate chain and private key; both empty serves plaintext HTTP/2 (behind a TLS proxy).
    pub tls_cert_path: String,
    pub tls_key_path: String,
    /// Largest request or response message; larger requests are refused with RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Threads serving gRPC connections; 0 = one per core (as the HTTP workers).
    pub workers: usize,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 50051,
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
            max_message_bytes: 4 * 1024 * 1024,
            workers: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Production,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub json_limit_bytes: usize,
    /// Reverse proxies (CIDR blocks or addresses) whose `X-Forwarded-For` names the client; parsed
    /// once, when the configuration is read.
    #[serde(default, deserialize_with = "proxies")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// What this instance runs: the API, the background workers, or both (`payd serve --role`).
    pub role: Role,
    /// On SIGTERM: how long in-flight requests may take to finish, and then how long background work
    /// (relay, consumers, senders, the invariant check) gets to stop. Keep the sum, plus any preStop
    /// delay, below the pod's `terminationGracePeriodSeconds`.
    pub shutdown_timeout_secs: u64,
    pub background_stop_secs: u64,
}

/// The work one `payd serve` instance does.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// HTTP API only: no outbox relay, consumers, senders, retention purge or invariant check.
    Api,
    /// Background work only: relay, notifier and webhook consumers, e-mail and webhook senders,
    /// retention, the periodic invariant check. Serves `/healthz`, `/readyz` and `/metrics`.
    Worker,
    /// Both (development and single-instance deployments).
    All,
}

impl Role {
    /// Whether this instance serves the public API.
    pub fn serves_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }
    /// Whether this instance runs the background workers.
    pub fn runs_workers(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::All => "all",
        }
    }
}

fn proxies<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let entries = Vec::<String>::deserialize(d)?;
    crate::http::client_ip::parse_proxies(&entries).map_err(|bad| {
        serde::de::Error::custom(format!(
            "server.trusted_proxies: {bad:?} is neither an IP address nor a CIDR block (e.g. 10.0.0.0/8)"
        ))
    })
}

#[derive(Clone, Debug, Deserialize)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub pool_size: u32,
    pub create_if_missing: bool,
    pub migrate_on_start: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RedisSettings {
    pub url: Secret,
    pub pool_size: u32,
    pub prefix: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: Secret,
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub verification_ttl_secs: i64,
    pub reset_ttl_secs: i64,
    pub lockout_threshold: u32,
    pub lockout_secs: u64,
    pub auth_rate_limit_per_minute: u32,
    pub check_revoked_sessions: bool,
    /// Bound on how long a revoked session (or a changed profile) may still be honoured by another
    /// instance; within it the in-process revocation list is trusted (docs/architecture.md, "Reads").
    #[serde(default = "default_revocation_staleness_ms")]
    pub revocation_staleness_ms: u64,
    pub bootstrap_admin_email: String,
    pub bootstrap_admin_password: Secret,
    /// Argon2id memory cost in KiB (OWASP: at least 19456 with t = 2, p = 1).
    #[serde(default = "default_argon2_memory")]
    pub argon2_memory_kib: u32,
    #[serde(default = "default_argon2_iterations")]
    pub argon2_iterations: u32,
    #[serde(default = "default_argon2_parallelism")]
    pub argon2_parallelism: u32,
}

fn default_argon2_memory() -> u32 {
    19_456
}
fn default_argon2_iterations() -> u32 {
    2
}
fn default_argon2_parallelism() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize)]
pub struct MailSettings {
    pub transport: MailTransport,
    pub from: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_username: String,
    pub smtp_password: Secret,
    pub smtp_tls: SmtpTls,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    Mailbox,
    Smtp,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_level: String,
    pub otlp_endpoint: String,
    pub service_name: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone, Debug, Deserialize)]
pub struct MoneySettings {
    pub currency: String,
    pub min_amount: i64,
    pub max_amount: i64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct LedgerSettings {
    pub writers: usize,
    pub max_batch: usize,
    pub max_wait_us: u64,
    pub queue_capacity: usize,
    pub shards: usize,
    pub mailbox_capacity: usize,
    pub ask_timeout_ms: u64,
    pub idle_timeout_secs: u64,
    pub exec_timeout_ms: u64,
    pub verify_interval_secs: u64,
    /// Upper bound on one periodic invariant-check round (PostgreSQL `statement_timeout`).
    pub verify_timeout_secs: u64,
    /// `lock_timeout` of the writer's connection; a batch waiting longer is retried.
    #[serde(default = "default_writer_lock_timeout_ms")]
    pub writer_lock_timeout_ms: u64,
    /// `statement_timeout` of the writer's connection; a batch running longer is retried.
    #[serde(default = "default_writer_statement_timeout_ms")]
    pub writer_statement_timeout_ms: u64,
    /// Extra attempts of a batch after a transient database failure (deadlock, timeout, lost
    /// connection) before its requests are answered 503 with nothing recorded.
    #[serde(default = "default_commit_retries")]
    pub commit_retries: u32,
    /// Back-off before the first retry; doubled on each further retry.
    #[serde(default = "default_commit_retry_backoff_ms")]
    pub commit_retry_backoff_ms: u64,
    /// How old an account actor's confirmed state may be for a balance read to be answered from
    /// memory; older state is reloaded first. Also the bound of the card cache: a card read reflects
    /// every change committed at least this long before it (docs/architecture.md, "Reads").
    #[serde(default = "default_read_staleness_ms")]
    pub read_staleness_ms: u64,
    /// Listen to the database's feed of committed account changes (`ledger::feed`): an account
    /// actor then answers a read from memory, within `read_staleness_ms`, unless the feed shows a
    /// newer commit, rather than reloading its account once per bound. Off: the reload rule alone.
    #[serde(default = "default_true")]
    pub change_feed: bool,
}

fn default_revocation_staleness_ms() -> u64 {
    1_000
}

fn default_read_staleness_ms() -> u64 {
    1_000
}

fn default_true() -> bool {
    true
}

fn default_writer_lock_timeout_ms() -> u64 {
    2_000
}
fn default_writer_statement_timeout_ms() -> u64 {
    10_000
}
fn default_commit_retries() -> u32 {
    4
}
fn default_commit_retry_backoff_ms() -> u64 {
    20
}

/// Statistics rollups (`src/stats`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct StatsSettings {
    /// IANA zone of the calendar days, months and years (changing it rebuilds the rollups).
    pub time_zone: String,
    /// How often the rollup job takes in newly committed operations (0 = off).
    pub interval_ms: u64,
    /// Most operations one round takes in.
    pub max_batch: i64,
    /// How long a skipped `seq` (a transaction not yet committed) is looked for before it is
    /// considered rolled back.
    pub gap_grace_secs: i64,
}

impl Default for StatsSettings {
    fn default() -> Self {
        Self { time_zone: "UTC".into(), interval_ms: 1000, max_batch: 50_000, gap_grace_secs: 120 }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct CardSettings {
    /// Key of the keyed hash that derives CVVs from PAN and expiry.
    pub cvv_key: Secret,
    /// Key of the keyed hash under which PANs are stored for lookup.
    pub pan_key: Secret,
    pub expiry_years: i32,
    /// The card networks payd issues cards on (`[[cards.networks]]`): the `brand` of a new card must
    /// name one. Default: visa, mastercard, american express, discover. Payment methods (top-up
    /// channels such as bca or ovo) are not networks: see `payments::methods` and docs/operations.md.
    #[serde(default = "default_networks")]
    pub networks: Vec<CardNetwork>,
    /// Accounts whose first statement page is kept in process (`cards::statements`); a full cache
    /// starts over.
    #[serde(default = "default_statement_cache_accounts")]
    pub statement_cache_accounts: usize,
    /// Lines kept per account: a first page (no cursor, no window) of at most this many lines is
    /// answered from memory when the account's version is unchanged. 0 turns the cache off.
    #[serde(default = "default_statement_cache_depth")]
    pub statement_cache_depth: i64,
    /// Cards × kinds whose first operation-list page is kept in process (`payments::lists`); a full
    /// cache starts over.
    #[serde(default = "default_statement_cache_accounts")]
    pub operation_list_cache_cards: usize,
    /// Operations kept per card and kind: a card's first list page (no other filter) of at most this
    /// many operations is answered from memory while the change feed shows nothing new. 0 turns it off.
    #[serde(default = "default_statement_cache_depth")]
    pub operation_list_cache_depth: i64,
}

fn default_statement_cache_accounts() -> usize {
    20_000
}

fn default_statement_cache_depth() -> i64 {
    crate::http::pagination::DEFAULT_LIMIT
}

/// One card network: its name (the `brand` of its cards), the IIN prefixes its numbers start with,
/// its PAN length and its CVV length.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CardNetwork {
    pub name: String,
    pub prefixes: Vec<String>,
    pub pan_length: usize,
    pub cvv_length: usize,
}

fn default_networks() -> Vec<CardNetwork> {
    crate::cards::pan::BRANDS
        .iter()
        .map(|(name, prefixes, pan_length, cvv_length)| CardNetwork {
            name: (*name).to_owned(),
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            pan_length: *pan_length,
            cvv_length: *cvv_length,
        })
        .collect()
}

impl CardSettings {
    /// The configured network called `name` (case and surrounding spaces ignored).
    pub fn network(&self, name: &str) -> Option<&CardNetwork> {
        let n = name.trim().to_lowercase();
        self.networks.iter().find(|b| b.name == n)
    }

    /// Checks the network list: at least one; names unique, lowercase, 1-50 characters; each with
    /// 1-6 digit prefixes leaving room for account digits and the check digit; PANs of 12-19 digits;
    /// CVVs of 3 or 4 digits.
    fn check_networks(&self) -> Result<(), ConfigError> {
        const KEY: &str = "cards.networks";
        if self.networks.is_empty() {
            return Err(invalid(KEY, "at least one network is required"));
        }
        let mut names = std::collections::HashSet::new();
        for n in &self.networks {
            let name = &n.name;
            if name.is_empty() || name.len() > 50 || *name != name.trim().to_lowercase() {
                return Err(invalid(KEY, format!("network name `{name}` must be 1-50 lowercase characters")));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(KEY, format!("network `{name}` is listed twice")));
            }
            if !(12..=19).contains(&n.pan_length) {
                return Err(invalid(KEY, format!("network `{name}`: pan_length must be between 12 and 19")));
            }
            if !(3..=4).contains(&n.cvv_length) {
                return Err(invalid(KEY, format!("network `{name}`: cvv_length must be 3 or 4")));
            }
            if n.prefixes.is_empty() {
                return Err(invalid(KEY, format!("network `{name}`: at least one prefix is required")));
            }
            for p in &n.prefixes {
                if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) || p.starts_with('0') {
                    return Err(invalid(
                        KEY,
                        format!("network `{name}`: prefix `{p}` must be 1-6 digits, not starting with 0"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct MerchantSettings {
    /// Where uploaded documents live: `postgres` (every replica sees them) or `dir`.
    pub document_store: DocumentStore,
    /// The `dir` store's directory; with `postgres`, documents uploaded before the move are still read
    /// from here until `payd documents import` has copied them into the database.
    pub document_dir: String,
    pub max_document_bytes: usize,
    pub required_documents: Vec<String>,
    pub key_rotation_overlap_secs: i64,
    /// Wrong expiry dates or CVVs per card within the window before the card is locked for payments
    /// (until its holder unlocks it).
    pub card_failure_limit: u32,
    pub card_failure_window_secs: u64,
    /// Declined card-data attempts (unknown numbers, wrong expiry or CVV, locked cards) per API key
    /// within the window before the key's payments are refused (429) until the window ends.
    #[serde(default = "default_key_failure_limit")]
    pub key_failure_limit: u32,
    #[serde(default = "default_key_failure_window")]
    pub key_failure_window_secs: u64,
    /// Multipart document uploads: at most this many parts (fields and files).
    #[serde(default = "default_upload_parts")]
    pub max_upload_parts: usize,
    /// Multipart document uploads: at most this many bytes for a non-file field.
    #[serde(default = "default_upload_field_bytes")]
    pub max_upload_field_bytes: usize,
}

fn default_key_failure_limit() -> u32 {
    50
}
fn default_key_failure_window() -> u64 {
    3600
}
fn default_upload_parts() -> usize {
    4
}
fn default_upload_field_bytes() -> usize {
    256
}

/// Stored answers of money requests (`Idempotency-Key`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct IdempotencySettings {
    /// Key of the HMAC-SHA256 request fingerprint stored with each answer.
    pub mac_key: Secret,
    /// Short id stored with each fingerprint (`<id>:<mac>`), so the key can be rotated.
    pub mac_key_id: String,
    /// The previous key during a rotation: fingerprints made under it still match (empty = none).
    pub previous_mac_key: Secret,
    pub previous_mac_key_id: String,
    /// Stored answers are kept this long, then purged (and the key may be reused).
    pub ttl_hours: i64,
}

const DEV_IDEMPOTENCY_KEY: &str = "dev-only-idempotency-key-change-me-dev-only-idem";

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            mac_key: Secret::new(DEV_IDEMPOTENCY_KEY),
            mac_key_id: "1".into(),
            previous_mac_key: Secret::default(),
            previous_mac_key_id: String::new(),
            ttl_hours: 24,
        }
    }
}

/// Per-caller limits on the money routes (fixed one-minute windows in Redis).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Off for load tests.
    pub enabled: bool,
    /// Money requests (top-ups, withdrawals, transfers, reversals) per user per minute.
    pub user_money_per_minute: u32,
    /// Payments and refunds per API key per minute.
    pub key_money_per_minute: u32,
    /// Recipient previews (`POST /transfers/recipient-preview`) per user per minute.
    pub recipient_previews_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            user_money_per_minute: 120,
            key_money_per_minute: 1200,
            recipient_previews_per_minute: 20,
        }
    }
}

/// The money notifications a user gets until they choose (`notify::preferences`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct NotificationSettings {
    /// Minor units: by default a transfer is e-mailed to its sender and receiver only from this amount
    /// (0 = every transfer). Top-ups, withdrawals and payments are e-mailed by default.
    pub transfer_min_amount: i64,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        // IDR 1,000,000.00
        Self { transfer_min_amount: 100_000_000 }
    }
}

/// Where merchant documents are stored.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStore {
    /// The `document_blobs` table (default): shared by every replica, nothing on the local disk.
    Postgres,
    /// Files under `merchants.document_dir` (single instance with a writable volume only).
    Dir,
}

/// Which broker the relay publishes to and the consumers read from.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// No broker: events go straight to the in-process consumers (development default).
    InProcess,
    RabbitMq,
    Kafka,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EventSettings {
    pub broker: BrokerKind,
    /// Run the outbox relay in this instance.
    pub relay_enabled: bool,
    /// Run the consumers (notifier, webhook dispatcher) and the e-mail and webhook senders here.
    pub consumers_enabled: bool,
    pub relay_batch: i64,
    pub poll_interval_ms: u64,
    pub lease_secs: i64,
    /// Relay back-off while the broker is unreachable.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// E-mail delivery attempts before the job is dead-lettered.
    pub max_attempts: i32,
    /// E-mail sender loops per instance (rounds overlap; claims never collide).
    pub mail_senders: usize,
    pub mail_backoff_initial_ms: u64,
    pub mail_backoff_max_ms: u64,
    /// Published outbox rows and dedupe records older than this are deleted (0 = keep).
    pub retention_hours: i64,
    pub rabbitmq_url: Secret,
    pub rabbitmq_exchange: String,
    pub rabbitmq_prefetch: u16,
    pub kafka_brokers: String,
    pub kafka_topic_prefix: String,
    pub kafka_group_prefix: String,
    pub kafka_partitions: i32,
    pub kafka_message_timeout_ms: u64,
    /// librdkafka properties passed through to the producer and consumers: `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, … (values never logged).
    #[serde(default)]
    pub kafka_options: std::collections::BTreeMap<String, Secret>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct WebhookSettings {
    /// Allow `http://` and private or loopback addresses (development and tests only).
    pub allow_insecure: bool,
    pub timeout_ms: u64,
    /// Retries stop this long after the first attempt (24 h by default); the delivery is then dead.
    pub max_age_secs: i64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failed attempts after which an endpoint is disabled (and its owner e-mailed).
    pub disable_after_failures: i32,
    /// How long a rotated-out secret keeps signing deliveries.
    pub rotation_overlap_secs: i64,
    pub concurrency: usize,
}

/// The compiled-in defaults alone (no environment file, no variables).
fn compiled_defaults() -> Result<config::Config, ConfigError> {
    Ok(config::Config::builder().add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml)).build()?)
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, problem: problem.into() }
}

impl Settings {
    /// Loads the layered configuration for `PAYD_ENV` (default `development`) and validates it.
    ///
    /// # Errors
    /// `ConfigError` naming the unreadable file or the invalid key.
    pub fn load() -> Result<Self, ConfigError> {
        let env = std::env::var("PAYD_ENV").unwrap_or_else(|_| "development".to_owned());
        let dir = std::env::var("PAYD_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("config"));
        Self::load_from(&env, &dir, true)
    }

    /// Loads `default` + `<env>.toml` from `dir` (if present), optionally with `PAYD_*` overrides.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(env: &str, dir: &std::path::Path, with_env_vars: bool) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml))
            .set_override("environment", env)?
            .add_source(config::File::from(dir.join(format!("{env}.toml"))).required(false));
        if with_env_vars {
            builder = builder.add_source(
                config::Environment::with_prefix("PAYD")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("server.trusted_proxies"),
            );
            // The bootstrap admin keys have flat names of their own.
            if let Ok(v) = std::env::var("PAYD_BOOTSTRAP_ADMIN_EMAIL") {
                builder = builder.set_override("auth.bootstrap_admin_email", v)?;
            }
            if let Ok(v) = std::env::var("PAYD_BOOTSTRAP_ADMIN_PASSWORD") {
                builder = builder.set_override("auth.bootstrap_admin_password", v)?;
            }
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Keys production must set explicitly: their compiled-in defaults point at a development machine
    /// (`127.0.0.1`, `guest`) or are development secrets.
    fn production_required(&self) -> Vec<(&'static str, String)> {
        let mut keys = vec![
            ("database.url", self.database.url.expose().to_owned()),
            ("redis.url", self.redis.url.expose().to_owned()),
            ("auth.jwt_secret", self.auth.jwt_secret.expose().to_owned()),
            ("cards.cvv_key", self.cards.cvv_key.expose().to_owned()),
            ("cards.pan_key", self.cards.pan_key.expose().to_owned()),
        ];
        match self.events.broker {
            BrokerKind::Kafka => keys.push(("events.kafka_brokers", self.events.kafka_brokers.clone())),
            BrokerKind::RabbitMq => keys.push(("events.rabbitmq_url", self.events.rabbitmq_url.expose().to_owned())),
            BrokerKind::InProcess => {}
        }
        keys
    }

    /// Checks cross-field rules the types cannot express.
    ///
    /// # Errors
    /// `ConfigError::Invalid` naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.environment == Environment::Production {
            let defaults = compiled_defaults()?;
            for (key, value) in self.production_required() {
                if defaults.get_string(key).ok().as_deref() == Some(value.as_str()) {
                    return Err(invalid(
                        key,
                        format!(
                            "must be set in production (PAYD_{}); the compiled-in default is for development",
                            key.to_uppercase().replace('.', "__")
                        ),
                    ));
                }
            }
            if self.events.broker == BrokerKind::InProcess && self.server.role != Role::All {
                return Err(invalid(
                    "events.broker",
                    "the in-process broker cannot carry events between api and worker instances in production; \
                     use kafka or rabbitmq",
                ));
            }
        }
        if !self.auth.bootstrap_admin_email.is_empty() && self.auth.bootstrap_admin_password.is_empty() {
            return Err(invalid("auth.bootstrap_admin_password", "must be set when auth.bootstrap_admin_email is"));
        }
        if self.mail.transport == MailTransport::Smtp
            && !self.mail.smtp_username.is_empty()
            && self.mail.smtp_password.is_empty()
        {
            return Err(invalid("mail.smtp_password", "must be set when mail.smtp_username is"));
        }
        if self.server.shutdown_timeout_secs == 0 || self.server.shutdown_timeout_secs > 300 {
            return Err(invalid("server.shutdown_timeout_secs", "must be between 1 and 300"));
        }
        if self.server.background_stop_secs == 0 || self.server.background_stop_secs > 300 {
            return Err(invalid("server.background_stop_secs", "must be between 1 and 300"));
        }
        if self.grpc.tls_cert_path.is_empty() != self.grpc.tls_key_path.is_empty() {
            return Err(invalid("grpc.tls_key_path", "grpc.tls_cert_path and grpc.tls_key_path are set together"));
        }
        if self.grpc.max_message_bytes < 1024 {
            return Err(invalid("grpc.max_message_bytes", "must be at least 1024"));
        }
        if self.ledger.verify_timeout_secs == 0 {
            return Err(invalid("ledger.verify_timeout_secs", "must be at least 1"));
        }
        let secret = self.auth.jwt_secret.expose();
        if secret.len() < 32 {
            return Err(invalid("auth.jwt_secret", "must be at least 32 characters"));
        }
        if self.environment == Environment::Production && secret == DEV_JWT_SECRET {
            return Err(invalid("auth.jwt_secret", "the development default cannot be used in production"));
        }
        if !self.database.url.expose().starts_with("postgres") {
            return Err(invalid("database.url", "must be a postgres:// URL"));
        }
        if self.database.pool_size == 0 {
            return Err(invalid("database.pool_size", "must be at least 1"));
        }
        if !self.redis.url.expose().starts_with("redis") {
            return Err(invalid("redis.url", "must be a redis:// URL"));
        }
        if self.auth.access_ttl_secs <= 0 || self.auth.access_ttl_secs > 3600 {
            return Err(invalid("auth.access_ttl_secs", "must be between 1 and 3600"));
        }
        if self.auth.refresh_ttl_secs <= self.auth.access_ttl_secs {
            return Err(invalid("auth.refresh_ttl_secs", "must be longer than auth.access_ttl_secs"));
        }
        if self.auth.lockout_threshold == 0 {
            return Err(invalid("auth.lockout_threshold", "must be at least 1"));
        }
        if self.money.currency.len() != 3 || !self.money.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid("money.currency", "must be a 3-letter ISO 4217 code such as IDR"));
        }
        if self.money.min_amount <= 0 || self.money.max_amount < self.money.min_amount {
            return Err(invalid("money.min_amount", "must be positive and not above money.max_amount"));
        }
        if self.notifications.transfer_min_amount < 0 {
            return Err(invalid("notifications.transfer_min_amount", "must be zero or more (minor units)"));
        }
        for (key, value, default) in [
            ("cards.cvv_key", &self.cards.cvv_key, "dev-only-cvv-key"),
            ("cards.pan_key", &self.cards.pan_key, "dev-only-pan-key"),
        ] {
            if value.expose().len() < 32 {
                return Err(invalid(key, "must be at least 32 characters"));
            }
            if self.environment == Environment::Production && value.expose().starts_with(default) {
                return Err(invalid(key, "the development default cannot be used in production"));
            }
        }
        let idem = &self.idempotency;
        if idem.mac_key.expose().len() < 32 {
            return Err(invalid("idempotency.mac_key", "must be at least 32 characters"));
        }
        if self.environment == Environment::Production && idem.mac_key.expose() == DEV_IDEMPOTENCY_KEY {
            return Err(invalid("idempotency.mac_key", "the development default cannot be used in production"));
        }
        let id_ok = |id: &str| !id.is_empty() && id.len() <= 16 && id.chars().all(|c| c.is_ascii_alphanumeric());
        if !id_ok(&idem.mac_key_id) {
            return Err(invalid("idempotency.mac_key_id", "must be 1-16 letters or digits"));
        }
        if !idem.previous_mac_key.is_empty() {
            if idem.previous_mac_key.expose().len() < 32 {
                return Err(invalid("idempotency.previous_mac_key", "must be at least 32 characters"));
            }
            if !id_ok(&idem.previous_mac_key_id) || idem.previous_mac_key_id == idem.mac_key_id {
                return Err(invalid(
                    "idempotency.previous_mac_key_id",
                    "must be 1-16 letters or digits, different from idempotency.mac_key_id",
                ));
            }
        }
        if idem.ttl_hours < 1 {
            return Err(invalid("idempotency.ttl_hours", "must be at least 1"));
        }
        let a = &self.auth;
        if a.argon2_memory_kib < 8 * a.argon2_parallelism.max(1) || a.argon2_iterations < 1 || a.argon2_parallelism < 1
        {
            return Err(invalid("auth.argon2_memory_kib", "argon2 parameters out of range"));
        }
        if self.environment == Environment::Production && (a.argon2_memory_kib < 19_456 || a.argon2_iterations < 2) {
            return Err(invalid(
                "auth.argon2_memory_kib",
                "production needs at least OWASP's recommendation (19456 KiB, 2 iterations)",
            ));
        }
        let m = &self.merchants;
        if m.card_failure_limit == 0 || m.card_failure_window_secs == 0 {
            return Err(invalid("merchants.card_failure_limit", "limit and window must be at least 1"));
        }
        if m.key_failure_limit == 0 || m.key_failure_window_secs == 0 {
            return Err(invalid("merchants.key_failure_limit", "limit and window must be at least 1"));
        }
        if m.max_upload_parts < 2 || m.max_upload_field_bytes < 16 {
            return Err(invalid("merchants.max_upload_parts", "at least 2 parts and 16 bytes per field"));
        }
        let rl = &self.rate_limits;
        if rl.enabled && rl.recipient_previews_per_minute == 0 {
            return Err(invalid(
                "rate_limits.recipient_previews_per_minute",
                "must be at least 1 (or rate_limits.enabled = false)",
            ));
        }
        if rl.enabled && (rl.user_money_per_minute == 0 || rl.key_money_per_minute == 0) {
            return Err(invalid(
                "rate_limits.user_money_per_minute",
                "must be at least 1 (or rate_limits.enabled = false)",
            ));
        }
        self.cards.check_networks()?;
        if !(1..=10).contains(&self.cards.expiry_years) {
            return Err(invalid("cards.expiry_years", "must be between 1 and 10"));
        }
        if !(0..=crate::http::pagination::MAX_LIMIT).contains(&self.cards.statement_cache_depth) {
            return Err(invalid("cards.statement_cache_depth", "must be between 0 and 100 (the largest page)"));
        }
        if !(0..=crate::http::pagination::MAX_LIMIT).contains(&self.cards.operation_list_cache_depth) {
            return Err(invalid("cards.operation_list_cache_depth", "must be between 0 and 100 (the largest page)"));
        }
        if self.cards.operation_list_cache_cards == 0 {
            return Err(invalid(
                "cards.operation_list_cache_cards",
                "must be at least 1 (depth 0 turns the cache off)",
            ));
        }
        if self.cards.statement_cache_accounts == 0 {
            return Err(invalid("cards.statement_cache_accounts", "must be at least 1 (depth 0 turns the cache off)"));
        }
        let l = &self.ledger;
        if !(1..=8).contains(&l.writers) {
            return Err(invalid("ledger.writers", "must be between 1 and 8"));
        }
        if !(1..=4096).contains(&l.max_batch) {
            return Err(invalid("ledger.max_batch", "must be between 1 and 4096"));
        }
        if l.queue_capacity == 0 || l.shards == 0 || l.mailbox_capacity == 0 {
            return Err(invalid("ledger.queue_capacity", "ledger capacities and shards must be at least 1"));
        }
        if self.merchants.max_document_bytes < 1024 {
            return Err(invalid("merchants.max_document_bytes", "must be at least 1024"));
        }
        for d in &self.merchants.required_documents {
            if !["business_licence", "owner_identity", "tax_id", "bank_statement"].contains(&d.as_str()) {
                return Err(invalid("merchants.required_documents", format!("unknown document type `{d}`")));
            }
        }
        if self.merchants.key_rotation_overlap_secs < 0 {
            return Err(invalid("merchants.key_rotation_overlap_secs", "must not be negative"));
        }
        let ev = &self.events;
        if !(1..=10_000).contains(&ev.relay_batch) {
            return Err(invalid("events.relay_batch", "must be between 1 and 10000"));
        }
        if ev.poll_interval_ms == 0 || ev.backoff_initial_ms == 0 || ev.backoff_max_ms < ev.backoff_initial_ms {
            return Err(invalid("events.backoff_initial_ms", "intervals must be positive and not above the maximum"));
        }
        if ev.lease_secs < 1 {
            return Err(invalid("events.lease_secs", "must be at least 1"));
        }
        if ev.mail_senders < 1 || ev.mail_senders > 64 {
            return Err(invalid("events.mail_senders", "must be between 1 and 64"));
        }
        if ev.max_attempts < 1 {
            return Err(invalid("events.max_attempts", "must be at least 1"));
        }
        if ev.mail_backoff_initial_ms == 0 || ev.mail_backoff_max_ms < ev.mail_backoff_initial_ms {
            return Err(invalid("events.mail_backoff_initial_ms", "must be positive and not above the maximum"));
        }
        if ev.broker == BrokerKind::RabbitMq && !ev.rabbitmq_url.expose().starts_with("amqp") {
            return Err(invalid("events.rabbitmq_url", "must be an amqp:// or amqps:// URL"));
        }
        if ev.broker == BrokerKind::Kafka && ev.kafka_brokers.trim().is_empty() {
            return Err(invalid("events.kafka_brokers", "must list at least one host:port"));
        }
        if ev.kafka_partitions < 1 {
            return Err(invalid("events.kafka_partitions", "must be at least 1"));
        }
        let wh = &self.webhooks;
        if self.environment == Environment::Production && wh.allow_insecure {
            return Err(invalid("webhooks.allow_insecure", "cannot be enabled in production"));
        }
        if wh.max_age_secs < 1 || wh.backoff_initial_ms == 0 || wh.backoff_max_ms < wh.backoff_initial_ms {
            return Err(invalid("webhooks.max_age_secs", "retry window and back-off must be positive"));
        }
        if wh.disable_after_failures < 1 || wh.concurrency == 0 || wh.timeout_ms == 0 {
            return Err(invalid("webhooks.disable_after_failures", "must be at least 1 (and concurrency, timeout)"));
        }
        if self.server.json_limit_bytes < 1024 {
            return Err(invalid("server.json_limit_bytes", "must be at least 1024"));
        }
        Ok(())
    }

    /// The database URL with any password masked, for logs.
    pub fn masked(&self) -> String {
        format!("{self:?}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn base() -> Settings {
        Settings::load_from("test", std::path::Path::new("config"), false).unwrap()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = base();
        assert_eq!(s.money.currency, "IDR");
        assert_eq!(s.money.min_amount, 50_000);
    }

    /// Production with every value that has a development default set explicitly.
    fn production() -> Settings {
        let mut s = base();
        s.environment = Environment::Production;
        s.database.url = Secret::new("postgres://payd:pw@db.internal:5432/payd");
        s.redis.url = Secret::new("redis://cache.internal:6379");
        s.auth.jwt_secret = Secret::new("p".repeat(48));
        s.cards.cvv_key = Secret::new("c".repeat(48));
        s.cards.pan_key = Secret::new("k".repeat(48));
        s.idempotency.mac_key = Secret::new("i".repeat(48));
        s.auth.argon2_memory_kib = 19_456;
        s.auth.argon2_iterations = 2;
        s.webhooks.allow_insecure = false;
        s
    }

    #[test]
    fn production_refuses_default_secret() {
        production().validate().unwrap();
        let mut s = production();
        s.auth.jwt_secret = base().auth.jwt_secret;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");
    }

    #[test]
    fn production_refuses_default_idempotency_key_and_weak_password_hashing() {
        let mut s = production();
        s.idempotency.mac_key = base().idempotency.mac_key;
        s.auth.argon2_memory_kib = base().auth.argon2_memory_kib;
        s.auth.argon2_iterations = base().auth.argon2_iterations;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("idempotency.mac_key"), "{err}");
        s.idempotency.mac_key = Secret::new("a-production-idem-key-0123456789-abcdefghij");
        // The test overlay's cheap argon2 parameters are refused in production.
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("argon2"), "{err}");
        s.auth.argon2_memory_kib = 19_456;
        s.auth.argon2_iterations = 2;
        s.validate().unwrap();
        // Rotation: the previous key needs its own id.
        s.idempotency.previous_mac_key = Secret::new("the-previous-idem-key-0123456789-abcdefgh");
        s.idempotency.previous_mac_key_id = s.idempotency.mac_key_id.clone();
        assert!(s.validate().unwrap_err().to_string().contains("previous_mac_key_id"));
        s.idempotency.previous_mac_key_id = "0".into();
        s.validate().unwrap();
        assert!(!s.masked().contains("idem-key"), "a key was printed");
    }

    #[test]
    fn defaults_are_owasp_argon2_and_limits_on() {
        let s = Settings::load_from("development", std::path::Path::new("config"), false).unwrap();
        assert_eq!((s.auth.argon2_memory_kib, s.auth.argon2_iterations, s.auth.argon2_parallelism), (19_456, 2, 1));
        assert!(s.rate_limits.enabled);
        assert_eq!(s.idempotency.ttl_hours, 24);
    }

    #[test]
    fn production_names_each_value_left_at_its_development_default() {
        type Reset = fn(&mut Settings);
        let cases: [(&str, Reset); 5] = [
            ("database.url", |s| s.database.url = base().database.url),
            ("redis.url", |s| s.redis.url = base().redis.url),
            ("cards.cvv_key", |s| s.cards.cvv_key = base().cards.cvv_key),
            ("cards.pan_key", |s| s.cards.pan_key = base().cards.pan_key),
            ("events.kafka_brokers", |s| s.events.broker = BrokerKind::Kafka),
        ];
        for (key, reset) in cases {
            let mut s = production();
            reset(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
        // Split roles need a real broker in production.
        let mut s = production();
        s.server.role = Role::Api;
        assert!(s.validate().unwrap_err().to_string().contains("`events.broker`"));
        s.events.broker = BrokerKind::Kafka;
        s.events.kafka_brokers = "kafka:9092".into();
        s.validate().unwrap();
    }

    #[test]
    fn short_secret_is_refused() {
        let mut s = base();
        s.auth.jwt_secret = Secret::new("short");
        assert!(s.validate().unwrap_err().to_string().contains("at least 32"));
    }

    #[test]
    fn trusted_proxies_are_parsed_when_loaded_and_bad_ones_named() {
        let dir = std::env::temp_dir().join(format!("payd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("test.toml"), "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.1\", \"\"]\n")
            .unwrap();
        let s = Settings::load_from("test", &dir, false).unwrap();
        let want: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "192.168.1.1/32".parse().unwrap()];
        assert_eq!(s.server.trusted_proxies, want);
        // The environment form is comma-separated (Compose and the Kubernetes ConfigMap use it).
        std::env::set_var("PAYD_SERVER__TRUSTED_PROXIES", "172.28.0.10,fd00::/8");
        let s = Settings::load_from("test", &dir, true);
        std::env::remove_var("PAYD_SERVER__TRUSTED_PROXIES");
        assert_eq!(s.unwrap().server.trusted_proxies.len(), 2);
        std::fs::write(dir.join("test.toml"), "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.local\"]\n")
            .unwrap();
        let err = Settings::load_from("test", &dir, false).err().map(|e| e.to_string()).unwrap_or_default();
        std::fs::remove_dir_all(&dir).ok();
        assert!(err.contains("server.trusted_proxies") && err.contains("proxy.local"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = base();
        let shown = s.masked();
        assert!(!shown.contains("dev-only-secret"), "{shown}");
        assert!(!shown.contains("postgres://"), "{shown}");
    }
}
