//! Graceful shutdown of one instance: the signal that starts it, the background tasks that must stop
//! within `server.background_stop_secs`, and database queries that are cancelled rather than awaited.
//!
//! Order on SIGTERM (see `cli::serve`): readiness answers 503 → the HTTP server stops accepting and
//! drains in-flight requests (`server.shutdown_timeout_secs`) → background loops finish their current
//! round and return; any still running after `server.background_stop_secs` are dropped, and running
//! cancellable queries are cancelled in PostgreSQL → the process exits without waiting for other
//! blocking work. Every loop here is at-least-once already (leases, dedupe), so a dropped round is
//! repeated by the next instance.

use std::future::Future;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::Integer;
use tokio::sync::{watch, Notify};

use crate::storage::{PgPool, StorageError};

/// Shared by every handle of one instance; cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    started: watch::Sender<bool>,
    tasks: AtomicUsize,
    idle: Notify,
    grace: Duration,
}

impl Shutdown {
    /// `grace`: how long a background task may run on after shutdown begins before it is dropped.
    pub fn new(grace: Duration) -> Self {
        let (started, _) = watch::channel(false);
        Self { inner: Arc::new(Inner { started, tasks: AtomicUsize::new(0), idle: Notify::new(), grace }) }
    }

    /// Starts the shutdown (idempotent).
    pub fn begin(&self) {
        self.inner.started.send_replace(true);
    }

    pub fn is_started(&self) -> bool {
        *self.inner.started.borrow()
    }

    /// Resolves once shutdown has begun.
    pub async fn started(&self) {
        let mut rx = self.inner.started.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Waits up to `d`, or less if shutdown begins; returns whether shutdown has begun. Background
    /// loops call this instead of sleeping.
    pub async fn sleep(&self, d: Duration) -> bool {
        let _ = tokio::time::timeout(d, self.started()).await;
        self.is_started()
    }

    /// Waits for `notify` (or `d`), returning early when shutdown begins; returns whether it has.
    pub async fn wait_for(&self, notify: &Notify, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::timeout(d, notify.notified()) => {}
            _ = self.started() => {}
        }
        self.is_started()
    }

    /// Runs a background task on the current actix System, counted until it returns. Once shutdown
    /// has begun the task has `grace` to return by itself, then it is dropped at its next await.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        self.inner.tasks.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        actix_web::rt::spawn(async move {
            let _guard = TaskGuard(this.clone());
            let deadline = async {
                this.started().await;
                tokio::time::sleep(this.inner.grace).await;
            };
            tokio::select! {
                () = fut => {}
                () = deadline => tracing::warn!(task = name, "background task did not stop in time; dropped"),
            }
        });
    }

    /// Background tasks still running.
    pub fn running(&self) -> usize {
        self.inner.tasks.load(Ordering::SeqCst)
    }

    /// Begins shutdown and waits until every background task has returned or been dropped, at most
    /// `limit`; returns how many were still running then.
    pub async fn drain(&self, limit: Duration) -> usize {
        self.begin();
        let wait = async {
            loop {
                let idle = self.inner.idle.notified();
                if self.running() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.running()
    }
}

struct TaskGuard(Shutdown);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.inner.tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.inner.idle.notify_waiters();
        }
    }
}

/// Like [`crate::storage::run`], but when shutdown begins first the query is cancelled in PostgreSQL
/// (`pg_cancel_backend`) and `StorageError::Other("cancelled: shutting down")` returned at once — a
/// long background query (the invariant check) never holds up the exit.
///
/// # Errors
/// The closure's error, `StorageError::Unavailable`, or the cancellation above.
pub async fn run_cancellable<T, F>(pool: &PgPool, shutdown: &Shutdown, f: F) -> Result<T, StorageError>
where
    F: FnOnce(&mut PgConnection) -> Result<T, StorageError> + Send + 'static,
    T: Send + 'static,
{
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    let backend = Arc::new(AtomicI32::new(0));
    let (p, b) = (pool.clone(), backend.clone());
    let task = tokio::task::spawn_blocking(move || {
        let mut conn = p.get().map_err(StorageError::from)?;
        let pid: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result(&mut conn)?;
        b.store(pid.pid, Ordering::SeqCst);
        let out = f(&mut conn);
        b.store(0, Ordering::SeqCst);
        out
    });
    if shutdown.is_started() {
        return Err(StorageError::Other("cancelled: shutting down".into()));
    }
    tokio::select! {
        joined = task => joined.map_err(|e| StorageError::Other(format!("blocking task failed: {e}")))?,
        () = shutdown.started() => {
            let pid = backend.load(Ordering::SeqCst);
            if pid != 0 {
                let cancelled = crate::storage::run(pool, move |conn| {
                    diesel::sql_query("SELECT pg_cancel_backend($1)").bind::<Integer, _>(pid).execute(conn)
                        .map_err(StorageError::from)
                })
                .await;
                tracing::info!(pid, ok = cancelled.is_ok(), "background query cancelled at shutdown");
            }
            Err(StorageError::Other("cancelled: shutting down".into()))
        }
    }
}
