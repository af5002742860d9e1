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
    pub stats: StatsSettings,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
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
    pub bootstrap_admin_email: String,
    pub bootstrap_admin_password: Secret,
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
}

#[derive(Clone, Debug, Deserialize)]
pub struct MerchantSettings {
    pub document_dir: String,
    pub max_document_bytes: usize,
    pub required_documents: Vec<String>,
    pub key_rotation_overlap_secs: i64,
    pub cvv_failure_limit: u32,
    pub cvv_failure_window_secs: u64,
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

    /// Checks cross-field rules the types cannot express.
    ///
    /// # Errors
    /// `ConfigError::Invalid` naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        if !(1..=10).contains(&self.cards.expiry_years) {
            return Err(invalid("cards.expiry_years", "must be between 1 and 10"));
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

    #[test]
    fn production_refuses_default_secret() {
        let mut s = base();
        s.environment = Environment::Production;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");
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
