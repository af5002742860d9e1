//! The command line: `payd serve | migrate up|down|status | seed | verify | stats rebuild | version`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::storage;

#[derive(Parser)]
#[command(name = "payd", version, about = "An actor-based concurrent stored-value payment platform")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (default).
    Serve,
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
    /// Print the version.
    Version,
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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Version) = cli.command {
        println!("payd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("payd: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
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
        Command::Version => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("payd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let _guard = crate::telemetry::init(&settings.telemetry)?;
    tracing::info!(config = %settings.masked(), "configuration loaded");
    actix_web::rt::System::new().block_on(async move {
        let running = crate::app::run(settings).await?;
        running.server.await?;
        Ok(())
    })
}

fn migrate(settings: &Settings, action: MigrateAction) -> anyhow::Result<()> {
    use diesel::Connection;
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
    }
    Ok(())
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
