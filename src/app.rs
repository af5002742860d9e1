//! Application assembly: shared state, database preparation, and the actix-web server (`run`), used
//! by `payd serve` and by the integration tests (which bind port 0).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use utoipa_swagger_ui::SwaggerUi;

use crate::cache::Cache;
use crate::config::Settings;
use crate::events::EventsService;
use crate::identity::tokens::TokenKeys;
use crate::ledger::LedgerService;
use crate::notify::Mailer;
use crate::shutdown::Shutdown;
use crate::storage::{self, PgPool};

/// Everything handlers share. Cheap to clone (all handles).
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: PgPool,
    pub cache: Cache,
    pub keys: Arc<TokenKeys>,
    pub mailer: Mailer,
    pub ledger: LedgerService,
    pub events: EventsService,
    pub blobs: Arc<dyn crate::merchants::blob::BlobStore>,
    /// Begins on SIGTERM: readiness answers 503, background loops stop (see `crate::shutdown`).
    pub shutdown: Shutdown,
    /// Revoked sessions known in process (`identity::revocations`).
    pub revocations: crate::identity::revocations::Revocations,
    /// `/auth/me` profiles cached in process (`identity::profiles`).
    pub profiles: crate::identity::profiles::Profiles,
    /// Card rows cached in process (`cards::cache`).
    pub cards: crate::cards::cache::Cards,
    /// First statement pages cached in process, validated by the account actors (`cards::statements`).
    pub statements: crate::cards::statements::Statements,
    /// First operation-list pages of cards cached in process, validated by the change feed (`payments::lists`).
    pub operation_lists: crate::payments::lists::OperationLists,
    /// Merchant API keys cached in process (`merchants::keys`).
    pub api_keys: crate::merchants::keys::KeyCache,
    /// The notification listener of the caches above and of the account change feed (its thread
    /// stops when the last handle is dropped).
    pub listeners: storage::notified::Listeners,
}

impl AppState {
    /// Prepares the database (create/migrate as configured) and starts the ledger's actors and writers.
    /// Must run inside an actix System.
    ///
    /// # Errors
    /// When a pool or the mailer cannot be configured, or the database cannot be prepared.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        crate::identity::password::configure(&settings.auth);
        let db = storage::pool(settings.database.url.expose(), settings.database.pool_size)?;
        let cache = Cache::new(settings.redis.url.expose(), settings.redis.pool_size, &settings.redis.prefix)?;
        let mailer = Mailer::new(&settings.mail, db.clone())?;
        prepare_database(&settings, &db).await?;
        let listeners = storage::notified::Listeners::new(settings.database.url.expose());
        let ledger = LedgerService::start(&settings, &db, &listeners).await?;
        let events = EventsService::new(&settings)?;
        let blobs = crate::merchants::blob::from_settings(&settings.merchants, &db);
        let shutdown = Shutdown::new(std::time::Duration::from_secs(settings.server.background_stop_secs));
        let revocations = crate::identity::revocations::Revocations::start(
            cache.clone(),
            settings.redis.url.expose(),
            std::time::Duration::from_millis(settings.auth.revocation_staleness_ms),
            std::time::Duration::from_secs(u64::try_from(settings.auth.access_ttl_secs).unwrap_or(900) + 60),
        );
        let profiles = crate::identity::profiles::Profiles::start(
            &listeners,
            std::time::Duration::from_millis(settings.auth.revocation_staleness_ms),
        );
        let cards = crate::cards::cache::Cards::start(
            &listeners,
            std::time::Duration::from_millis(settings.ledger.read_staleness_ms),
        );
        let statements = crate::cards::statements::Statements::new(
            settings.cards.statement_cache_accounts,
            settings.cards.statement_cache_depth,
        );
        let operation_lists = crate::payments::lists::OperationLists::new(
            settings.cards.operation_list_cache_cards,
            settings.cards.operation_list_cache_depth,
        );
        let api_keys = crate::merchants::keys::cache(
            &listeners,
            std::time::Duration::from_millis(settings.auth.revocation_staleness_ms),
        );
        listeners.run();
        Ok(Self {
            listeners,
            api_keys,
            shutdown,
            keys: Arc::new(TokenKeys::new(&settings.auth)),
            settings: Arc::new(settings),
            db,
            cache,
            mailer,
            ledger,
            events,
            blobs,
            revocations,
            profiles,
            cards,
            statements,
            operation_lists,
        })
    }
}

/// Creates the database (if configured) and applies pending migrations (if configured).
///
/// # Errors
/// When the database cannot be reached, created or migrated.
pub async fn prepare_database(settings: &Settings, pool: &PgPool) -> anyhow::Result<()> {
    if settings.database.create_if_missing {
        let url = settings.database.url.expose().to_owned();
        let created = tokio::task::spawn_blocking(move || storage::create_database_if_missing(&url)).await??;
        if created {
            tracing::info!("database created");
        }
    }
    if settings.database.migrate_on_start {
        let applied = storage::run(pool, storage::migrate_up).await?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "migrations applied");
        }
    }
    Ok(())
}

/// A running server.
pub struct Running {
    pub port: u16,
    /// The gRPC API (`grpc.enabled`, on API instances).
    pub grpc: Option<crate::grpc::GrpcServer>,
    pub handle: ServerHandle,
    pub server: actix_web::dev::Server,
    pub state: AppState,
}

/// Prepares the database, bootstraps the admin and starts serving. Returns once the socket is bound.
///
/// # Errors
/// When the database cannot be prepared or the address cannot be bound.
pub async fn run(settings: Settings) -> anyhow::Result<Running> {
    let state = AppState::start(settings).await?;
    crate::stats::check_time_zone(&state).await?;
    crate::identity::admin::bootstrap_admin(&state).await.map_err(|e| anyhow::anyhow!("bootstrap admin: {e}"))?;
    let listener = TcpListener::bind((state.settings.server.host.as_str(), state.settings.server.port))?;
    let port = listener.local_addr()?.port();
    let env = state.settings.environment;
    let openapi = crate::http::api_for(env).openapi();
    let data = web::Data::new(state.clone());
    let json_limit = state.settings.server.json_limit_bytes;
    let serves_api = state.settings.server.role.serves_api();
    let mut server = HttpServer::new(move || {
        let app = App::new()
            .app_data(data.clone())
            .configure(|cfg| crate::http::extractor_config(cfg, json_limit))
            .wrap(Compress::default())
            .wrap(from_fn(crate::http::request_id::envelope));
        if serves_api {
            app.service(web::redirect("/docs", "/docs/"))
                .service(SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", openapi.clone()))
                .configure(|cfg| crate::http::api_for(env).configure(cfg))
                .default_service(web::to(crate::http::not_found))
        } else {
            // A worker serves its probes and metrics only.
            app.configure(crate::http::operations_only).default_service(web::to(crate::http::not_found))
        }
    })
    .listen(listener)?
    // SIGTERM is handled by `cli::serve` (readiness first, then a graceful stop, then background work).
    .disable_signals()
    .shutdown_timeout(state.settings.server.shutdown_timeout_secs);
    if state.settings.server.workers > 0 {
        server = server.workers(state.settings.server.workers);
    }
    let grpc = if serves_api && state.settings.grpc.enabled { Some(crate::grpc::start(&state).await?) } else { None };
    let server = server.run();
    spawn_background(&state);
    tracing::info!(port, role = state.settings.server.role.as_str(), "payd listening");
    Ok(Running { port, grpc, handle: server.handle(), server, state })
}

/// Periodic work inside the service: gauges everywhere; on worker instances (`server.role` worker or
/// all) the events workers and the invariant check.
/// Posting ids one periodic invariant round covers at most (`ledger::verify::run_recent_bounded`): at
/// ~16,000 postings/s of sustained load a round covers about 12 s of it, well inside
/// `ledger.verify_timeout_secs`; a check that fell behind catches up in rounds of this size, one after
/// the other.
const VERIFY_ROUND_POSTINGS: i64 = 200_000;

fn spawn_background(state: &AppState) {
    crate::events::spawn(state);
    if state.settings.server.role.runs_workers() {
        // Statistics rollups: background work, with the events workers (safe on several instances).
        crate::stats::spawn(state);
    }
    let (st, shutdown) = (state.clone(), state.shutdown.clone());
    let capacity = i64::try_from(state.settings.ledger.queue_capacity).unwrap_or(i64::MAX);
    state.shutdown.spawn("ledger-gauges", async move {
        loop {
            st.ledger.export_gauges();
            // The writer-queue saturation alert divides the depth by this.
            crate::metrics::set_gauge("ledger_queue_capacity", capacity);
            if shutdown.sleep(std::time::Duration::from_secs(5)).await {
                return;
            }
        }
    });
    let every = state.settings.ledger.verify_interval_secs;
    if every == 0 || !state.settings.server.role.runs_workers() {
        return;
    }
    let (st, shutdown) = (state.clone(), state.shutdown.clone());
    state.shutdown.spawn("verify", async move {
        // Incremental: each round checks the postings committed since the previous one (see
        // `ledger::verify::run_recent`); the full history is `payd verify`'s job. A round is bounded
        // by `ledger.verify_timeout_secs` and cancelled in PostgreSQL when shutdown begins.
        let timeout_ms = st.settings.ledger.verify_timeout_secs.saturating_mul(1000);
        let mut after = None;
        let mut behind = false;
        loop {
            // A round that stopped at its window's end while newer postings were committed is followed
            // at once by the next one; otherwise the check waits for its interval.
            if !behind && shutdown.sleep(std::time::Duration::from_secs(every)).await {
                return;
            }
            behind = false;
            let Some(from) = after else {
                match storage::run(&st.db, |conn| {
                    crate::ledger::verify::last_posting(conn).map_err(storage::StorageError::from)
                })
                .await
                {
                    Ok(n) => after = Some(n),
                    Err(e) => tracing::warn!(error = %e, "periodic verify could not start"),
                }
                continue;
            };
            let round = crate::shutdown::run_cancellable(&st.db, &shutdown, move |conn| {
                use diesel::connection::SimpleConnection;
                conn.batch_execute(&format!("SET statement_timeout = {timeout_ms}"))?;
                let r = crate::ledger::verify::run_recent_bounded(conn, from, VERIFY_ROUND_POSTINGS)
                    .map_err(storage::StorageError::from);
                conn.batch_execute("RESET statement_timeout")?;
                r
            })
            .await;
            let metrics = crate::metrics::METRICS.as_ref();
            match round {
                Ok((r, next, more)) => {
                    after = Some(next);
                    behind = more && !shutdown.is_started();
                    if let Some(m) = metrics {
                        m.invariant_violations.set(r.violations());
                        m.verify_runs.with_label_values(&[if r.is_clean() { "clean" } else { "violations" }]).inc();
                        m.verify_last_success.set(chrono::Utc::now().timestamp());
                    }
                    if r.is_clean() {
                        tracing::debug!(postings = r.postings, "periodic verify clean");
                    } else {
                        tracing::error!(violations = r.violations(), report = %r, "ledger invariant violations");
                    }
                }
                Err(_) if shutdown.is_started() => return,
                Err(e) => {
                    if let Some(m) = metrics {
                        m.verify_runs.with_label_values(&["failed"]).inc();
                    }
                    tracing::warn!(error = %e, "periodic verify failed");
                }
            }
        }
    });
}
