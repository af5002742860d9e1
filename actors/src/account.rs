//! Owns account actors (kept by the shared sharded registry, `crate::registry`): per-account serialisation of
//! reservation decisions over the last committed balance (the store remains the
//! authority and re-checks every debit).
//!
//! Supervision choice: account actors run under [`actix::Supervisor`]. On a restart the
//! reservation map is cleared (callers' later `Release`s become no-ops) and the cached
//! state is marked stale; the restarted actor reloads its snapshot through the loader
//! before handling any further message (`ctx.wait`). Dropped reservations cannot lose
//! money: the store's floor guard still refuses any overdraft.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, MailboxError, Message, Supervised,
    WrapFuture,
};

use crate::registry::{AskError, Home, Loader, Registered, Sharded};
use crate::store::{AccountId, AccountSnapshot, AccountState, StoreError};

/// Blocking loader of account snapshots (run through `spawn_blocking`).
pub type AccountLoader = Loader<AccountSnapshot>;

/// Identifier of one outstanding reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(pub u64);

static NEXT_RESERVATION: AtomicU64 = AtomicU64::new(1);

impl ReservationId {
    /// A process-unique reservation id.
    pub fn next() -> Self {
        Self(NEXT_RESERVATION.fetch_add(1, Ordering::Relaxed))
    }
}

/// One outstanding reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub amount: i64,
    pub created: Instant,
}

/// Tuning shared by account and card actors.
#[derive(Clone, Debug)]
pub struct ActorConfig {
    /// Mailbox capacity of every actor (senders beyond it wait, then time out).
    pub mailbox_capacity: usize,
    /// Timeout of every ask (`send().timeout()`); expiry maps to `Busy`.
    pub ask_timeout: Duration,
    /// Reservations older than this are dropped by the sweep.
    pub reservation_ttl: Duration,
    /// Period of the sweep (ttl + idle checks).
    pub sweep_interval: Duration,
    /// An actor without messages for this long and without reservations stops.
    pub idle_timeout: Duration,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            mailbox_capacity: 256,
            ask_timeout: Duration::from_secs(2),
            reservation_ttl: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Errors of account operations.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AccountError {
    /// The amount exceeds what is available above the floor.
    #[error("insufficient funds (available {available})")]
    InsufficientFunds { available: i64 },
    /// Amount must be > 0.
    #[error("invalid amount")]
    InvalidAmount,
    /// No such account.
    #[error("account not found")]
    NotFound,
    /// The actor did not answer within the ask timeout (mailbox full / overloaded).
    #[error("account busy")]
    Busy,
    /// The actor or store is unavailable.
    #[error("account unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Rejected { reason } => Self::Unavailable(reason),
            StoreError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

/// Reserve `amount` (> 0) under `id`. Duplicate ids are idempotent.
#[derive(Debug, Clone, Copy)]
pub struct Reserve {
    pub id: ReservationId,
    pub amount: i64,
}
impl Message for Reserve {
    type Result = Result<(), AccountError>;
}

/// Drop reservation `id` (no-op if absent) and apply any newer observed state.
#[derive(Debug, Clone)]
pub struct Release {
    pub id: ReservationId,
    pub observed: Vec<AccountState>,
}
impl Message for Release {
    type Result = ();
}

/// Apply a committed state if its version is newer than the cached one.
#[derive(Debug, Clone, Copy)]
pub struct Observe(pub AccountState);
impl Message for Observe {
    type Result = ();
}

/// Inspect `(balance, reserved, available)`; `available` is `i64::MAX` when unbounded.
#[derive(Debug, Clone, Copy)]
pub struct Available;
impl Message for Available {
    type Result = Result<(i64, i64, i64), AccountError>;
}

/// Account actor: committed state, floor and outstanding reservations of one account.
pub struct AccountActor {
    state: AccountState,
    floor: Option<i64>,
    reserved: i64,
    reservations: HashMap<ReservationId, Reservation>,
    last_activity: Instant,
    home: Home<AccountActor>,
    stale: bool,
    retired: bool,
}

impl fmt::Debug for AccountActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountActor")
            .field("state", &self.state)
            .field("floor", &self.floor)
            .field("reserved", &self.reserved)
            .field("reservations", &self.reservations.len())
            .field("stale", &self.stale)
            .field("retired", &self.retired)
            .finish()
    }
}

impl AccountActor {
    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    fn apply(&mut self, s: AccountState) {
        if s.id == self.state.id && s.version > self.state.version {
            self.state = s;
        }
    }

    fn available(&self) -> Option<i64> {
        match self.floor {
            None => Some(i64::MAX),
            Some(floor) => self.state.balance.checked_sub(self.reserved).and_then(|v| v.checked_sub(floor)),
        }
    }

    fn reserve(&mut self, id: ReservationId, amount: i64) -> Result<(), AccountError> {
        if amount <= 0 {
            return Err(AccountError::InvalidAmount);
        }
        if self.reservations.contains_key(&id) {
            return Ok(());
        }
        let new_reserved = self.reserved.checked_add(amount).ok_or(AccountError::InsufficientFunds { available: 0 })?;
        if self.floor.is_some() {
            // Overflow anywhere in `balance - reserved - floor` refuses.
            let available = self.available().ok_or(AccountError::InsufficientFunds { available: 0 })?;
            if amount > available {
                return Err(AccountError::InsufficientFunds { available: available.max(0) });
            }
        }
        self.reserved = new_reserved;
        self.reservations.insert(id, Reservation { amount, created: Instant::now() });
        crate::gauges::RESERVATIONS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn release(&mut self, id: ReservationId) {
        if let Some(r) = self.reservations.remove(&id) {
            self.reserved = self.reserved.saturating_sub(r.amount);
            crate::gauges::RESERVATIONS.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            ctx.stop();
            return;
        }
        let ttl = self.home.cfg.reservation_ttl;
        let before = self.reservations.len();
        self.reservations.retain(|_, r| r.created.elapsed() < ttl);
        crate::gauges::forget_reservations(before - self.reservations.len());
        if self.reservations.len() != before {
            tracing::warn!(
                account = self.state.id,
                dropped = before - self.reservations.len(),
                "dropping expired reservations"
            );
            self.reserved = self.reservations.values().fold(0i64, |acc, r| acc.saturating_add(r.amount));
        }
        if self.reservations.is_empty() && self.last_activity.elapsed() >= self.home.cfg.idle_timeout {
            ctx.wait(self.home.forget(self.state.id).into_actor(self).map(
                |_, act: &mut Self, ctx: &mut Context<Self>| {
                    act.retired = true;
                    ctx.stop();
                },
            ));
        }
    }

    fn resync(&mut self, ctx: &mut Context<Self>) {
        let loader = Arc::clone(&self.home.loader);
        let id = self.state.id;
        let fut = tokio::task::spawn_blocking(move || loader(id));
        ctx.wait(fut.into_actor(self).map(|res, act: &mut Self, _| {
            match res {
                Ok(Ok(snap)) => {
                    act.state = snap.state;
                    act.floor = snap.floor;
                }
                Ok(Err(e)) => {
                    tracing::warn!(account = act.state.id, error = %e, "resync after restart failed");
                }
                Err(e) => {
                    tracing::warn!(account = act.state.id, error = %e, "resync after restart failed");
                }
            }
            act.stale = false;
        }));
    }
}

impl Actor for AccountActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.home.cfg.sweep_interval, |act, ctx| act.sweep(ctx));
        if self.stale && !self.retired {
            self.resync(ctx);
        }
    }
}

impl Supervised for AccountActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(
            account = self.state.id,
            dropped = self.reservations.len(),
            "account actor restarting; clearing reservations and resyncing"
        );
        crate::gauges::forget_reservations(self.reservations.len());
        self.reservations.clear();
        self.reserved = 0;
        if !self.retired {
            self.stale = true;
        }
    }
}

const RETIRED: &str = "account actor retired";

impl Handler<Reserve> for AccountActor {
    type Result = Result<(), AccountError>;
    fn handle(&mut self, msg: Reserve, _ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(AccountError::Unavailable(RETIRED.into()));
        }
        self.touch();
        self.reserve(msg.id, msg.amount)
    }
}

impl Handler<Release> for AccountActor {
    type Result = ();
    fn handle(&mut self, msg: Release, _ctx: &mut Context<Self>) {
        self.touch();
        self.release(msg.id);
        for s in msg.observed {
            self.apply(s);
        }
    }
}

impl Handler<Observe> for AccountActor {
    type Result = ();
    fn handle(&mut self, msg: Observe, _ctx: &mut Context<Self>) {
        self.apply(msg.0);
    }
}

impl Handler<Available> for AccountActor {
    type Result = Result<(i64, i64, i64), AccountError>;
    fn handle(&mut self, _msg: Available, _ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(AccountError::Unavailable(RETIRED.into()));
        }
        self.touch();
        Ok((self.state.balance, self.reserved, self.available().unwrap_or(0)))
    }
}

impl Registered for AccountActor {
    type Snapshot = AccountSnapshot;
    type Error = AccountError;

    fn build(id: AccountId, snapshot: AccountSnapshot, home: Home<Self>) -> Self {
        AccountActor {
            state: AccountState { id, ..snapshot.state },
            floor: snapshot.floor,
            reserved: 0,
            reservations: HashMap::new(),
            last_activity: Instant::now(),
            home,
            stale: false,
            retired: false,
        }
    }
}

impl AskError for AccountError {
    fn unavailable(reason: String) -> Self {
        Self::Unavailable(reason)
    }
    fn from_mailbox(e: MailboxError) -> Self {
        match e {
            MailboxError::Timeout => Self::Busy,
            MailboxError::Closed => Self::Unavailable("account actor stopped".into()),
        }
    }
    fn unavailable_reason(&self) -> Option<&str> {
        match self {
            Self::Unavailable(m) => Some(m),
            _ => None,
        }
    }
}

/// Cloneable entry point to the sharded account actors.
#[derive(Clone)]
pub struct AccountsHandle {
    inner: Arc<Sharded<AccountActor>>,
}

impl fmt::Debug for AccountsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountsHandle").field("cfg", &self.inner.cfg).finish_non_exhaustive()
    }
}

impl AccountsHandle {
    /// Starts `shards` (>= 1) arbiters, each running one account registry.
    /// Must be called inside a running actix `System`.
    pub fn new(shards: usize, store_loader: AccountLoader, cfg: ActorConfig) -> Self {
        Self { inner: Arc::new(Sharded::new(shards, store_loader, cfg)) }
    }

    /// The live actor for `account`, if one is running.
    pub fn live_addr(&self, account: AccountId) -> Option<Addr<AccountActor>> {
        self.inner.live(account).map(|e| e.addr)
    }

    /// Reserves `amount` on `account` under reservation `id` (loads the actor if needed).
    ///
    /// # Errors
    /// [`AccountError::InvalidAmount`] (amount <= 0), [`AccountError::InsufficientFunds`],
    /// [`AccountError::NotFound`], [`AccountError::Busy`] (ask timeout),
    /// [`AccountError::Unavailable`] (actor stopped / store trouble).
    pub async fn reserve(&self, account: AccountId, id: ReservationId, amount: i64) -> Result<(), AccountError> {
        self.inner.ask(account, Reserve { id, amount }).await
    }

    /// Releases reservation `id` and applies `observed` states. Delivered with `do_send`
    /// (ignores mailbox capacity) to the live actor only; no-op if none is live.
    pub async fn release(&self, account: AccountId, id: ReservationId, observed: Vec<AccountState>) {
        if let Some(e) = self.inner.live(account) {
            e.addr.do_send(Release { id, observed });
        }
    }

    /// Fire-and-forget: applies `state` to the live actor of `state.id`, if any.
    pub fn observe(&self, state: AccountState) {
        if let Some(e) = self.inner.live(state.id) {
            e.addr.do_send(Observe(state));
        }
    }

    /// `(balance, reserved, available)` of `account` (loads the actor if needed).
    ///
    /// # Errors
    /// [`AccountError::NotFound`], [`AccountError::Busy`], [`AccountError::Unavailable`].
    pub async fn available(&self, account: AccountId) -> Result<(i64, i64, i64), AccountError> {
        self.inner.ask(account, Available).await
    }

    /// Number of live account actors across shards.
    pub fn live_actors(&self) -> usize {
        self.inner.live_actors()
    }

    /// The ask timeout used for every command.
    pub fn mailbox_timeout(&self) -> Duration {
        self.inner.cfg.ask_timeout
    }

    /// The actor configuration.
    pub fn config(&self) -> &ActorConfig {
        &self.inner.cfg
    }

    /// Stops every shard arbiter (and with them all account actors).
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}
