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
}

impl AppState {
    /// Prepares the database (create/migrate as configured) and starts the ledger's actors and writers.
    /// Must run inside an actix System.
    ///
    /// # Errors
    /// When a pool or the mailer cannot be configured, or the database cannot be prepared.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let db = storage::pool(settings.database.url.expose(), settings.database.pool_size)?;
        let cache = Cache::new(settings.redis.url.expose(), settings.redis.pool_size, &settings.redis.prefix)?;
        let mailer = Mailer::new(&settings.mail, db.clone())?;
        prepare_database(&settings, &db).await?;
        let ledger = LedgerService::start(&settings, &db).await?;
        let events = EventsService::new(&settings)?;
        let blobs = Arc::new(crate::merchants::blob::LocalDir::new(&settings.merchants.document_dir));
        Ok(Self {
            keys: Arc::new(TokenKeys::new(&settings.auth)),
            settings: Arc::new(settings),
            db,
            cache,
            mailer,
            ledger,
            events,
            blobs,
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
    let openapi = crate::http::api().openapi();
    let data = web::Data::new(state.clone());
    let json_limit = state.settings.server.json_limit_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(|cfg| crate::http::extractor_config(cfg, json_limit))
            .wrap(Compress::default())
            .wrap(from_fn(crate::http::request_id::envelope))
            .service(web::redirect("/docs", "/docs/"))
            .service(SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", openapi.clone()))
            .configure(|cfg| crate::http::api().configure(cfg))
            .default_service(web::to(crate::http::not_found))
    })
    .listen(listener)?
    .shutdown_timeout(10);
    if state.settings.server.workers > 0 {
        server = server.workers(state.settings.server.workers);
    }
    let server = server.run();
    spawn_background(&state);
    tracing::info!(port, "payd listening");
    Ok(Running { port, handle: server.handle(), server, state })
}

/// Periodic work inside the service: gauges, the invariant check, and the events workers.
fn spawn_background(state: &AppState) {
    crate::events::spawn(state);
    crate::stats::spawn(state);
    let st = state.clone();
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            st.ledger.export_gauges();
        }
    });
    let every = state.settings.ledger.verify_interval_secs;
    if every == 0 {
        return;
    }
    let st = state.clone();
    actix_web::rt::spawn(async move {
        // Incremental: each round checks the postings committed since the previous one (see
        // `ledger::verify::run_recent`); the full history is `payd verify`'s job.
        let mut after = None;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        loop {
            tick.tick().await;
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
            let round = storage::run(&st.db, move |conn| {
                crate::ledger::verify::run_recent(conn, from).map_err(storage::StorageError::from)
            })
            .await;
            match round {
                Ok((r, next)) => {
                    after = Some(next);
                    if let Some(m) = crate::metrics::METRICS.as_ref() {
                        m.invariant_violations.set(r.violations());
                    }
                    if r.is_clean() {
                        tracing::debug!(postings = r.postings, "periodic verify clean");
                    } else {
                        tracing::error!(violations = r.violations(), report = %r, "ledger invariant violations");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "periodic verify failed"),
            }
        }
    });
}
