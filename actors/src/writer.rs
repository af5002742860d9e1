//! Owns the group-commit ledger writer: one dedicated OS thread per store connection
//! drains a shared bounded queue, batches entries, commits them in one transaction and
//! isolates bad entries by bisection. Replies are sent only after the commit returned.

use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;

use crate::store::{AccountId, AccountState, EntryOutcome, JournalEntry, LedgerStore, Refusal, StoreError};

/// Callback invoked after every gathered batch with `(batch size, commit latency)`.
pub type BatchHook = Arc<dyn Fn(usize, Duration) + Send + Sync>;

/// Result delivered to one submitter.
pub type CommitResult = Result<Vec<AccountState>, CommitError>;

type Job<R> = (JournalEntry<R>, oneshot::Sender<CommitResult>);

/// Why an entry was not committed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CommitError {
    /// The entry's unique (idempotency) key is already taken: another request with the same key
    /// won. Nothing was written for this entry; the rest of its batch committed.
    #[error("duplicate key")]
    Duplicate,
    /// A guard refused this entry on the store's committed, locked state (funds, account status,
    /// refund total). `current` holds the committed state of the entry's accounts.
    #[error("refused: {refusal:?}")]
    Refused { refusal: Refusal, current: Vec<AccountState> },
    /// A uniqueness rule of the operation itself (named by `constraint`) refused this entry alone
    /// (found by splitting its batch): another operation already holds it.
    #[error("conflict with {constraint}")]
    Conflict { constraint: String },
    /// An integrity rule of the store refused this entry alone (found by splitting its batch).
    /// `current` holds the current committed state of the entry's accounts (best effort).
    #[error("rejected: {reason}")]
    Rejected { reason: String, current: Vec<AccountState> },
    /// The store stayed unavailable after retries, or the writer is stopped. Nothing was
    /// written for the entry.
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// The writer queue is full (back-pressure; answer 503). Nothing was submitted.
    #[error("ledger writer busy")]
    Busy,
}

/// Writer tuning.
#[derive(Clone)]
pub struct WriterConfig {
    /// Maximum entries per transaction (>= 1).
    pub max_batch: usize,
    /// How long to keep gathering after the first entry of a batch.
    pub max_wait: Duration,
    /// Capacity of the shared queue; a full queue answers [`CommitError::Busy`].
    pub queue_capacity: usize,
    /// Extra attempts after a retryable (unavailable / transient) commit failure.
    pub unavailable_retries: u32,
    /// Backoff before the first retry; doubled on every further retry.
    pub retry_backoff: Duration,
    /// Histogram hook: `(batch size, commit latency)` per gathered batch.
    pub on_batch: Option<BatchHook>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 64,
            max_wait: Duration::from_millis(2),
            queue_capacity: 4096,
            unavailable_retries: 3,
            retry_backoff: Duration::from_millis(10),
            on_batch: None,
        }
    }
}

impl fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterConfig")
            .field("max_batch", &self.max_batch)
            .field("max_wait", &self.max_wait)
            .field("queue_capacity", &self.queue_capacity)
            .field("unavailable_retries", &self.unavailable_retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("on_batch", &self.on_batch.is_some())
            .finish()
    }
}

/// Atomic writer counters.
#[derive(Debug, Default)]
pub struct WriterStats {
    batches: AtomicU64,
    entries: AtomicU64,
    rejected: AtomicU64,
    unavailable: AtomicU64,
    busy: AtomicU64,
    duplicates: AtomicU64,
    retries: AtomicU64,
    restarts: AtomicU64,
    last_batch_size: AtomicU64,
    threads: AtomicUsize,
    alive: AtomicUsize,
}

impl WriterStats {
    /// Gathered batches processed.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    /// Entries committed successfully.
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }
    /// Entries answered with [`CommitError::Rejected`].
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
    /// Entries answered with [`CommitError::Unavailable`] by a writer thread.
    pub fn unavailable(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }
    /// Submissions refused with [`CommitError::Busy`].
    pub fn busy(&self) -> u64 {
        self.busy.load(Ordering::Relaxed)
    }
    /// Entries answered [`CommitError::Duplicate`].
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    /// Batch commits retried after a retryable failure.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    /// Writer threads restarted after a panic.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
    /// Writer threads started.
    pub fn threads(&self) -> usize {
        self.threads.load(Ordering::Relaxed)
    }
    /// Writer threads running now (ready when equal to [`threads`](Self::threads) and > 0).
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }
    /// Size of the most recent gathered batch.
    pub fn last_batch_size(&self) -> u64 {
        self.last_batch_size.load(Ordering::Relaxed)
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Cloneable submission side of the writer.
pub struct WriterHandle<R> {
    tx: Sender<Job<R>>,
    stats: Arc<WriterStats>,
}

impl<R> Clone for WriterHandle<R> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), stats: Arc::clone(&self.stats) }
    }
}

impl<R> fmt::Debug for WriterHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterHandle").field("queued", &self.tx.len()).finish()
    }
}

impl<R: Send + 'static> WriterHandle<R> {
    /// Submits an entry and waits for its durable outcome.
    ///
    /// # Errors
    /// [`CommitError::Busy`] immediately when the queue is full;
    /// [`CommitError::Rejected`] when the store refused this entry;
    /// [`CommitError::Unavailable`] when the store stayed unavailable or the writer stopped.
    pub async fn commit(&self, entry: JournalEntry<R>) -> CommitResult {
        match self.submit(entry) {
            Ok(rx) => rx.await.unwrap_or_else(|_| Err(CommitError::Unavailable("writer dropped the entry".into()))),
            Err((e, _entry)) => Err(e),
        }
    }

    /// Like [`commit`](Self::commit) but hands the entry back when it was never queued.
    ///
    /// # Errors
    /// As [`commit`](Self::commit); `Err((error, Some(entry)))` when the entry was not
    /// queued (Busy / writer stopped), `Err((error, None))` once the writer owned it.
    pub async fn commit_or_return(
        &self,
        entry: JournalEntry<R>,
    ) -> Result<Vec<AccountState>, (CommitError, Option<JournalEntry<R>>)> {
        match self.submit(entry) {
            Ok(rx) => match rx.await {
                Ok(Ok(states)) => Ok(states),
                Ok(Err(e)) => Err((e, None)),
                Err(_) => Err((CommitError::Unavailable("writer dropped the entry".into()), None)),
            },
            Err((e, entry)) => Err((e, Some(entry))),
        }
    }

    fn submit(
        &self,
        entry: JournalEntry<R>,
    ) -> Result<oneshot::Receiver<CommitResult>, (CommitError, JournalEntry<R>)> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send((entry, reply)) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full((entry, _))) => {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                Err((CommitError::Busy, entry))
            }
            Err(TrySendError::Disconnected((entry, _))) => {
                Err((CommitError::Unavailable("ledger writer stopped".into()), entry))
            }
        }
    }

    /// Counters shared by all writer threads.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Entries currently waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// Group-commit writer (namespace for [`LedgerWriter::start`]).
pub struct LedgerWriter<S>(PhantomData<S>);

impl<S: LedgerStore> LedgerWriter<S> {
    /// Starts one dedicated OS thread per store, all draining one bounded queue.
    /// Threads exit once every [`WriterHandle`] clone is dropped and the queue is drained.
    /// With an empty `stores` every commit answers [`CommitError::Unavailable`].
    pub fn start(stores: Vec<S>, cfg: WriterConfig) -> WriterHandle<S::Record> {
        let (tx, rx) = crossbeam_channel::bounded::<Job<S::Record>>(cfg.queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        for (n, store) in stores.into_iter().enumerate() {
            let worker = Worker { store, rx: rx.clone(), cfg: cfg.clone(), stats: Arc::clone(&stats) };
            stats.threads.fetch_add(1, Ordering::Relaxed);
            stats.alive.fetch_add(1, Ordering::Relaxed);
            let thread_stats = Arc::clone(&stats);
            let spawned = thread::Builder::new().name(format!("ledger-writer-{n}")).spawn(move || {
                supervise(worker);
                thread_stats.alive.fetch_sub(1, Ordering::Relaxed);
            });
            if let Err(e) = spawned {
                stats.alive.fetch_sub(1, Ordering::Relaxed);
                tracing::error!(error = %e, "could not spawn ledger writer thread");
            }
        }
        WriterHandle { tx, stats }
    }
}

/// Runs a worker until its queue closes. A panic while handling a batch drops that batch's replies
/// (their submitters see `Unavailable`), resets the store's connection (the server rolls back a
/// half-done transaction) and resumes with the next batch.
fn supervise<S: LedgerStore>(mut worker: Worker<S>) {
    loop {
        match catch_unwind(AssertUnwindSafe(|| worker.run())) {
            Ok(()) => return,
            Err(_) => {
                worker.stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!("ledger writer thread panicked; resetting its connection and resuming");
                worker.store.reset();
            }
        }
    }
}

struct Worker<S: LedgerStore> {
    store: S,
    rx: Receiver<Job<S::Record>>,
    cfg: WriterConfig,
    stats: Arc<WriterStats>,
}

impl<S: LedgerStore> Worker<S> {
    fn run(&mut self) {
        let max_batch = self.cfg.max_batch.max(1);
        while let Ok(first) = self.rx.recv() {
            let mut batch = Vec::with_capacity(max_batch);
            batch.push(first);
            let deadline = Instant::now() + self.cfg.max_wait;
            while batch.len() < max_batch {
                match self.rx.recv_deadline(deadline) {
                    Ok(job) => batch.push(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            let size = batch.len();
            let started = Instant::now();
            let (entries, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let mut replies: Vec<Option<oneshot::Sender<CommitResult>>> = replies.into_iter().map(Some).collect();
            crate::faults::writer_batch();
            self.commit_split(&entries, &mut replies);
            let latency = started.elapsed();
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            self.stats.last_batch_size.store(count(size), Ordering::Relaxed);
            if let Some(hook) = &self.cfg.on_batch {
                hook(size, latency);
            }
        }
        tracing::debug!("ledger writer thread exiting");
    }

    /// Commits `entries` and answers each from its own outcome. A batch-level failure that is not
    /// retryable (an integrity rule) or stays transient after the retries is split in halves so only
    /// the entry that causes it fails; a lost connection fails the whole batch as unavailable.
    fn commit_split(
        &mut self,
        entries: &[JournalEntry<S::Record>],
        replies: &mut [Option<oneshot::Sender<CommitResult>>],
    ) {
        match self.commit_with_retry(entries) {
            Ok(outcomes) => {
                for ((entry, reply), outcome) in entries.iter().zip(replies.iter_mut()).zip(outcomes) {
                    let result = match outcome {
                        EntryOutcome::Committed(states) => {
                            self.stats.entries.fetch_add(1, Ordering::Relaxed);
                            Ok(filter_states(&states, &entry.accounts()))
                        }
                        EntryOutcome::Duplicate => {
                            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            Err(CommitError::Duplicate)
                        }
                        EntryOutcome::Refused { refusal, current } => {
                            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                            Err(CommitError::Refused { refusal, current })
                        }
                    };
                    send(reply, result);
                }
            }
            Err(StoreError::Unavailable(msg)) => {
                self.stats.unavailable.fetch_add(count(entries.len()), Ordering::Relaxed);
                for reply in replies.iter_mut() {
                    send(reply, Err(CommitError::Unavailable(msg.clone())));
                }
            }
            Err(_) if entries.len() > 1 => {
                let mid = entries.len() / 2;
                let (left_e, right_e) = entries.split_at(mid);
                let (left_r, right_r) = replies.split_at_mut(mid);
                self.commit_split(left_e, left_r);
                self.commit_split(right_e, right_r);
            }
            Err(StoreError::Transient(msg)) => {
                self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                for reply in replies.iter_mut() {
                    send(reply, Err(CommitError::Unavailable(msg.clone())));
                }
            }
            Err(StoreError::Conflict { constraint }) => {
                for reply in replies.iter_mut() {
                    send(reply, Err(CommitError::Conflict { constraint: constraint.clone() }));
                }
            }
            Err(other) => {
                let reason = match other {
                    StoreError::Rejected { reason } => reason,
                    StoreError::NotFound => "account not found".to_string(),
                    StoreError::Unavailable(msg) | StoreError::Transient(msg) => msg,
                    StoreError::Conflict { constraint } => constraint,
                };
                self.stats.rejected.fetch_add(count(entries.len()), Ordering::Relaxed);
                for (entry, reply) in entries.iter().zip(replies.iter_mut()) {
                    let ids = entry.accounts();
                    let current =
                        if ids.is_empty() { Vec::new() } else { self.store.account_states(&ids).unwrap_or_default() };
                    send(reply, Err(CommitError::Rejected { reason: reason.clone(), current }));
                }
            }
        }
    }

    fn commit_with_retry(&mut self, entries: &[JournalEntry<S::Record>]) -> Result<Vec<EntryOutcome>, StoreError> {
        let mut backoff = self.cfg.retry_backoff;
        let mut attempt: u32 = 0;
        loop {
            match self.store.commit_batch(entries) {
                Err(e) if e.is_retryable() && attempt < self.cfg.unavailable_retries => {
                    attempt += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(attempt, error = %e, "ledger commit failed transiently; retrying");
                    thread::sleep(backoff);
                    backoff = backoff.saturating_mul(2);
                }
                other => return other,
            }
        }
    }
}

fn send(reply: &mut Option<oneshot::Sender<CommitResult>>, result: CommitResult) {
    if let Some(tx) = reply.take() {
        // The submitter may have gone away; the commit outcome stands regardless.
        let _ = tx.send(result);
    }
}

fn filter_states(states: &[AccountState], ids: &[AccountId]) -> Vec<AccountState> {
    states.iter().filter(|s| ids.contains(&s.id)).copied().collect()
}
