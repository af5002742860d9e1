//! The command line: `payd serve [--role api|worker|all] | migrate up|down|status | config check |
//! documents import|export | seed | verify | stats rebuild | openapi | version`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Role, Settings};
use crate::storage;

#[derive(Parser)]
#[command(name = "payd", version, about = "An actor-based concurrent stored-value payment platform")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and/or run the background workers (default).
    Serve {
        /// What this instance runs (overrides `server.role`): the API, the workers, or both.
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
    /// Configuration: `payd config check` loads and validates it without connecting to anything.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Merchant documents: move files written by the directory store into PostgreSQL, or back.
    Documents {
        #[command(subcommand)]
        action: DocumentsAction,
    },
    /// Database migrations (embedded in the binary).
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Load demo data (an admin and verified demo users; with --months, cards, merchants and months of
    /// operations for the statistics), with progress output.
    Seed {
        /// Number of demo users.
        #[arg(long, default_value_t = 20)]
        users: u32,
        /// Months of operation history to generate (0 = none).
        #[arg(long, default_value_t = 0)]
        months: u32,
        /// Operations of history to generate.
        #[arg(long, default_value_t = 100_000)]
        operations: u64,
        /// Cards per demo user (history only).
        #[arg(long, default_value_t = 2)]
        cards_per_user: u32,
        /// Active merchants, two API keys each (history only).
        #[arg(long, default_value_t = 5)]
        merchants: u32,
    },
    /// Recompute every balance from postings and check every ledger invariant (exit 1 on a violation).
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Statistics rollups.
    Stats {
        #[command(subcommand)]
        action: StatsAction,
    },
    /// Print the OpenAPI document of the HTTP API (pretty JSON; what `docs/openapi.json` holds).
    Openapi {
        /// The route table of this environment (production has no development mailbox).
        #[arg(long, value_enum, default_value = "production")]
        env: crate::config::Environment,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the configuration this environment gives payd (exit 2 naming the first bad key).
    Check {
        /// Check as this role (as `payd serve --role` would run).
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
}

#[derive(Subcommand)]
enum DocumentsAction {
    /// Copy documents from `merchants.document_dir` (or --from) into PostgreSQL; idempotent, checks SHA-256.
    Import {
        #[arg(long)]
        from: Option<std::path::PathBuf>,
    },
    /// Write every document stored in PostgreSQL to a directory (before reverting its migration).
    Export {
        #[arg(long)]
        to: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum StatsAction {
    /// Recompute every statistics rollup from the ledger (in `stats.time_zone`).
    Rebuild,
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Revert the last applied migration.
    Down,
    /// List migrations and whether each is applied.
    Status,
    /// Wait until every migration in this binary is applied (by `payd migrate up` elsewhere: the
    /// Kubernetes Job); an init container runs this so pods never serve an older schema.
    Wait {
        /// Give up (exit 1) after this long.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Version) = cli.command {
        println!("payd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Openapi { env }) = cli.command {
        return match openapi_json(env) {
            Ok(doc) => {
                println!("{doc}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("payd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let role = match &cli.command {
        Some(Command::Serve { role }) | Some(Command::Config { action: ConfigAction::Check { role } }) => *role,
        _ => None,
    };
    let settings = match Settings::load().and_then(|mut s| {
        if let Some(r) = role {
            s.server.role = r;
            s.validate()?;
        }
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("payd: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve { role: None }) {
        Command::Serve { .. } => serve(settings),
        Command::Config { action: ConfigAction::Check { .. } } => {
            println!(
                "configuration ok: environment={:?} role={} broker={:?} document_store={:?}",
                settings.environment,
                settings.server.role.as_str(),
                settings.events.broker,
                settings.merchants.document_store
            );
            Ok(())
        }
        Command::Documents { action } => documents(&settings, action),
        Command::Migrate { action } => migrate(&settings, action),
        Command::Seed { users, months, operations, cards_per_user, merchants } => {
            let plan = (months > 0).then_some(crate::stats::seed::HistoryPlan {
                months,
                operations,
                cards_per_user,
                merchants,
            });
            seed(settings, users, plan)
        }
        Command::Verify { json } => return verify(&settings, json),
        Command::Stats { action: StatsAction::Rebuild } => stats_rebuild(&settings),
        Command::Version | Command::Openapi { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("payd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The OpenAPI document of an environment's route table, as pretty JSON (utoipa's key order: paths,
/// schemas and responses are sorted maps, so the output is the same on every run).
///
/// # Errors
/// Serialisation failure.
pub fn openapi_json(env: crate::config::Environment) -> Result<String, serde_json::Error> {
    crate::http::api_for(env).openapi().to_pretty_json()
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let guard = crate::telemetry::init(&settings.telemetry)?;
    tracing::info!(config = %settings.masked(), "configuration loaded");
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let running = crate::app::run(settings).await?;
        let (state, handle) = (running.state.clone(), running.handle.clone());
        actix_web::rt::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(signal, "shutting down: readiness off, draining in-flight requests");
            // Readiness answers 503 from now on; background loops see it too and finish their round.
            state.shutdown.begin();
            handle.stop(true).await;
        });
        running.server.await?;
        if let Some(grpc) = running.grpc {
            // Shutdown has begun: the gRPC server drains its in-flight calls within the same bound.
            let limit = std::time::Duration::from_secs(running.state.settings.server.shutdown_timeout_secs);
            if tokio::time::timeout(limit, grpc.task).await.is_err() {
                tracing::warn!("gRPC calls still running at the shutdown timeout");
            }
        }
        let stop = std::time::Duration::from_secs(running.state.settings.server.background_stop_secs);
        let left = running.state.shutdown.drain(stop + std::time::Duration::from_millis(500)).await;
        tracing::info!(background_tasks_left = left, "stopped");
        Ok::<_, anyhow::Error>(())
    });
    // Dropping `system` would wait for every blocking task still running (a query that ignores its
    // cancellation, a hung SMTP call): exit now instead, within the bound the settings promise.
    drop(guard);
    std::mem::forget(system);
    result
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C); returns the signal's name.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

fn documents(settings: &Settings, action: DocumentsAction) -> anyhow::Result<()> {
    use diesel::Connection;
    let mut conn = diesel::PgConnection::establish(settings.database.url.expose())?;
    match action {
        DocumentsAction::Import { from } => {
            let dir = from.unwrap_or_else(|| std::path::PathBuf::from(&settings.merchants.document_dir));
            let r = crate::merchants::blob::import_dir(&mut conn, &dir)?;
            println!(
                "documents: {} imported from {}, {} already in PostgreSQL, {} missing, {} corrupt",
                r.imported,
                dir.display(),
                r.present,
                r.missing.len(),
                r.corrupt.len()
            );
            for k in &r.missing {
                println!("missing: {k}");
            }
            for k in &r.corrupt {
                println!("corrupt (SHA-256 differs from the upload's): {k}");
            }
            if !r.corrupt.is_empty() {
                anyhow::bail!("{} document(s) did not match their recorded SHA-256", r.corrupt.len());
            }
        }
        DocumentsAction::Export { to } => {
            let n = crate::merchants::blob::export_dir(&mut conn, &to).map_err(anyhow::Error::msg)?;
            println!("documents: {n} written to {}", to.display());
        }
    }
    Ok(())
}

fn migrate(settings: &Settings, action: MigrateAction) -> anyhow::Result<()> {
    use diesel::Connection;
    if let MigrateAction::Wait { timeout_secs } = action {
        return migrate_wait(settings, std::time::Duration::from_secs(timeout_secs));
    }
    if settings.database.create_if_missing {
        storage::create_database_if_missing(settings.database.url.expose())?;
    }
    let mut conn = diesel::PgConnection::establish(settings.database.url.expose())?;
    match action {
        MigrateAction::Up => {
            let applied = storage::migrate_up(&mut conn)?;
            if applied.is_empty() {
                println!("database is up to date");
            }
            for v in applied {
                println!("applied {v}");
            }
        }
        MigrateAction::Down => println!("reverted {}", storage::migrate_down(&mut conn)?),
        MigrateAction::Status => {
            for (name, applied) in storage::migration_status(&mut conn)? {
                println!("[{}] {name}", if applied { "x" } else { " " });
            }
        }
        MigrateAction::Wait { .. } => {}
    }
    Ok(())
}

/// Polls (every 2 s) until no migration of this binary is pending; the database may not even be
/// reachable yet when it starts.
fn migrate_wait(settings: &Settings, timeout: std::time::Duration) -> anyhow::Result<()> {
    use diesel::Connection;
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let pending = diesel::PgConnection::establish(settings.database.url.expose())
            .map_err(anyhow::Error::from)
            .and_then(|mut c| storage::migration_status(&mut c).map_err(anyhow::Error::from))
            .map(|status| status.into_iter().filter(|(_, applied)| !applied).map(|(n, _)| n).collect::<Vec<_>>());
        let now = match pending {
            Ok(p) if p.is_empty() => {
                println!("migrations: all applied");
                return Ok(());
            }
            Ok(p) => format!("waiting for {} migration(s): {}", p.len(), p.join(", ")),
            Err(e) => format!("waiting for the database: {e:#}"),
        };
        if now != last {
            println!("migrations: {now}");
            last = now;
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("migrations still pending after {}s ({last})", timeout.as_secs());
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

fn seed(settings: Settings, users: u32, history: Option<crate::stats::seed::HistoryPlan>) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        crate::seed::run(settings.clone(), users).await?;
        if let Some(plan) = history {
            let state = crate::app::AppState::start(settings).await?;
            crate::stats::seed::history(&state, plan).await?;
        }
        Ok(())
    })
}

fn verify(settings: &Settings, json: bool) -> ExitCode {
    use diesel::Connection;
    let report = diesel::PgConnection::establish(settings.database.url.expose()).map_err(anyhow::Error::from).and_then(
        |mut conn| {
            let mut report = crate::ledger::verify::run(&mut conn)?;
            report.checks.extend(crate::stats::rollup::verify(&mut conn)?);
            Ok(report)
        },
    );
    match report {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!("{r}");
            }
            if r.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("payd verify: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn stats_rebuild(settings: &Settings) -> anyhow::Result<()> {
    use diesel::Connection;
    let mut conn = diesel::PgConnection::establish(settings.database.url.expose())?;
    let tz = &settings.stats.time_zone;
    if !crate::stats::rollup::time_zone_known(&mut conn, tz)? {
        anyhow::bail!("stats.time_zone: unknown time zone {tz:?}");
    }
    let started = std::time::Instant::now();
    let r = crate::stats::rollup::rebuild(&mut conn, tz)?;
    println!(
        "statistics rebuilt in {:.1?}: {} operations up to seq {} ({} recent seqs not visible yet), time zone {tz}",
        started.elapsed(),
        r.counted,
        r.upto,
        r.gaps
    );
    Ok(())
}

#[cfg(test)]
mod openapi_tests {
    #![allow(clippy::unwrap_used)]

    /// `docs/openapi.json` is what `payd openapi` prints: regenerate it with `make openapi`.
    #[test]
    fn committed_openapi_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let current = format!("{}\n", super::openapi_json(crate::config::Environment::Production).unwrap());
        assert!(
            committed == current,
            "docs/openapi.json is stale (or missing): run `make openapi` and commit docs/openapi.json and docs/postman/"
        );
    }

    /// The Postman collection has one request per operation of the committed document (`make openapi`
    /// writes both).
    #[test]
    fn postman_collection_covers_every_operation() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/docs/openapi.json")).unwrap_or_default())
                .unwrap_or_default();
        let operations: usize = doc["paths"]
            .as_object()
            .map_or(0, |paths| paths.values().filter_map(|p| p.as_object()).map(|p| p.len()).sum());
        let collection =
            std::fs::read_to_string(format!("{dir}/docs/postman/payd.postman_collection.json")).unwrap_or_default();
        let requests = collection.matches("\"request\":").count();
        assert!(operations > 100, "docs/openapi.json has {operations} operations");
        assert_eq!(requests, operations, "docs/postman/ is stale: run `make openapi` and commit docs/postman/");
    }

    #[test]
    fn openapi_output_is_deterministic() {
        let env = crate::config::Environment::Production;
        assert_eq!(super::openapi_json(env).unwrap(), super::openapi_json(env).unwrap());
    }
}
