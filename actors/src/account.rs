//! Owns account actors (kept by the shared sharded registry, `crate::registry`): per-account serialisation of
//! reservation decisions over the last committed balance (the store remains the
//! authority and re-checks every debit).
//!
//! An actor loads its own snapshot when it starts, before it handles any message (`ctx.wait`), so
//! no commit can slip between the load and the registration. Its cache is never trusted for a
//! refusal: the coordinator reloads the committed state ([`AccountsHandle::resync`]) before a
//! decline is recorded, so money that arrived through another instance is spendable at once.
//!
//! Supervision: account actors run under [`actix::Supervisor`]. A panic inside a handler is caught,
//! the caller gets `Unavailable` and the actor stops; the supervisor restarts it, the reservation
//! map is cleared (callers' later `Release`s become no-ops) and the snapshot is reloaded before any
//! further message. Dropped reservations cannot lose money: the store's floor guard still refuses
//! any overdraft.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, MailboxError, Message, Supervised,
    WrapFuture,
};

use crate::feed::ChangeFeed;
use crate::registry::{guarded, AskError, Home, Loader, Registered, Sharded};
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
    /// The store's feed of committed account changes, if this instance listens to one: a read
    /// older than its bound is answered from memory when the feed shows nothing newer
    /// ([`crate::feed`]). Card actors ignore it.
    pub feed: Option<Arc<ChangeFeed>>,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            mailbox_capacity: 256,
            ask_timeout: Duration::from_secs(2),
            reservation_ttl: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(300),
            feed: None,
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
            StoreError::Conflict { constraint } => Self::Unavailable(constraint),
            StoreError::Unavailable(m) | StoreError::Transient(m) => Self::Unavailable(m),
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

/// Reload the committed state (balance, version, floor) from the store before handling anything
/// else; answers the state now cached.
#[derive(Debug, Clone, Copy)]
pub struct Resync;
impl Message for Resync {
    type Result = Result<AccountState, AccountError>;
}

/// Inspect `(balance, reserved, available)`; `available` is `i64::MAX` when unbounded.
#[derive(Debug, Clone, Copy)]
pub struct Available;
impl Message for Available {
    type Result = Result<(i64, i64, i64), AccountError>;
}

/// Read the account as a balance read needs it, from memory when the cached state was confirmed
/// against the store less than `max_age` ago, or when the instance's change feed (if any) vouches
/// for it within `max_age` ([`crate::feed`]); otherwise the snapshot is reloaded first (serialised
/// with the actor's other messages, so a burst of reads on a stale actor costs one load).
#[derive(Debug, Clone, Copy)]
pub struct Read {
    pub max_age: Duration,
}
impl Message for Read {
    type Result = Result<AccountRead, AccountError>;
}

/// What [`Read`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRead {
    /// The committed state (balance, version, totals).
    pub state: AccountState,
    /// Sum of outstanding reservations.
    pub reserved: i64,
    /// `balance − reserved − floor` (`i64::MAX` when unbounded).
    pub available: i64,
    /// Lowest balance allowed (`None` = unbounded).
    pub floor: Option<i64>,
    /// Whether this read reloaded the snapshot from the store.
    pub reloaded: bool,
}

/// Account actor: committed state, floor and outstanding reservations of one account.
pub struct AccountActor {
    state: AccountState,
    /// When the cached state was last loaded from the store (the instant the load started): every
    /// commit acknowledged before it is reflected in `state`.
    confirmed_at: Option<Instant>,
    floor: Option<i64>,
    reserved: i64,
    reservations: HashMap<ReservationId, Reservation>,
    last_activity: Instant,
    home: Home<AccountActor>,
    stale: bool,
    retired: bool,
    /// Why the snapshot could not be loaded; every message is answered with it until the actor stops.
    failed: Option<AccountError>,
    /// Held while `failed`, so messages already queued are answered rather than dropped.
    keep_alive: Option<Addr<AccountActor>>,
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
            self.keep_alive = None;
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

    /// Applies a snapshot read from the store: the committed state unless a newer version is
    /// already cached, and the floor as stored.
    fn load(&mut self, snap: AccountSnapshot) {
        if snap.state.version >= self.state.version {
            self.state = AccountState { id: self.state.id, ..snap.state };
        }
        self.floor = snap.floor;
    }

    /// Answer for messages when the actor cannot serve (retired, or its snapshot failed to load).
    fn unusable(&self) -> Option<AccountError> {
        if let Some(e) = &self.failed {
            return Some(e.clone());
        }
        self.retired.then(|| AccountError::Unavailable(RETIRED.into()))
    }

    /// Loads the snapshot before any further message is handled. A failed load leaves the actor
    /// answering the failure and retiring, so the next use starts a fresh actor.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        let loader = Arc::clone(&self.home.loader);
        let id = self.state.id;
        let started = Instant::now();
        let fut = tokio::task::spawn_blocking(move || loader(id));
        ctx.wait(fut.into_actor(self).map(move |res, act: &mut Self, ctx: &mut Context<Self>| {
            act.stale = false;
            match res {
                Ok(Ok(snap)) => {
                    act.load(snap);
                    act.confirmed_at = Some(started);
                }
                Ok(Err(e)) => {
                    tracing::warn!(account = act.state.id, error = %e, "account snapshot load failed");
                    act.fail(AccountError::from(e), ctx);
                }
                Err(e) => {
                    tracing::warn!(account = act.state.id, error = %e, "account snapshot load failed");
                    act.fail(AccountError::Unavailable("snapshot load aborted".into()), ctx);
                }
            }
        }));
    }

    /// Answers every message with `e` from now on; the registry forgets the actor at once (the next
    /// use starts a fresh one) and the next sweep stops it.
    fn fail(&mut self, e: AccountError, ctx: &mut Context<Self>) {
        self.failed = Some(e);
        self.keep_alive = Some(ctx.address());
        ctx.wait(self.home.forget(self.state.id).into_actor(self).map(|_, act: &mut Self, _| act.retired = true));
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
    fn handle(&mut self, msg: Reserve, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.unusable() {
            return Err(e);
        }
        self.touch();
        let id = self.state.id;
        guarded(ctx, "account", id, || {
            crate::faults::reserve(id);
            self.reserve(msg.id, msg.amount)
        })
        .unwrap_or_else(|| Err(AccountError::Unavailable("account actor restarted after a fault".into())))
    }
}

impl Handler<Resync> for AccountActor {
    type Result = actix::ResponseActFuture<Self, Result<AccountState, AccountError>>;
    fn handle(&mut self, _msg: Resync, _ctx: &mut Context<Self>) -> Self::Result {
        let loader = Arc::clone(&self.home.loader);
        let id = self.state.id;
        let unusable = self.unusable();
        self.touch();
        let started = Instant::now();
        Box::pin(
            async move {
                match unusable {
                    Some(e) => Err(e),
                    None => match tokio::task::spawn_blocking(move || loader(id)).await {
                        Ok(r) => r.map_err(AccountError::from),
                        Err(_) => Err(AccountError::Unavailable("snapshot load aborted".into())),
                    },
                }
            }
            .into_actor(self)
            .map(move |res, act: &mut Self, _| {
                let snap = res?;
                // A resync is not atomic: a load started earlier than the one the actor already
                // holds (a read's reload that overtook it) must not bring back an older floor.
                if act.confirmed_at.is_none_or(|c| c <= started) {
                    act.load(snap);
                }
                act.confirm(started);
                Ok(act.state)
            }),
        )
    }
}

impl AccountActor {
    fn confirm(&mut self, started: Instant) {
        if self.confirmed_at.is_none_or(|c| c < started) {
            self.confirmed_at = Some(started);
        }
    }

    fn read(&self, reloaded: bool) -> AccountRead {
        AccountRead {
            state: self.state,
            reserved: self.reserved,
            available: self.available().unwrap_or(0),
            floor: self.floor,
            reloaded,
        }
    }
}

impl Handler<Read> for AccountActor {
    type Result = actix::AtomicResponse<Self, Result<AccountRead, AccountError>>;
    fn handle(&mut self, msg: Read, _ctx: &mut Context<Self>) -> Self::Result {
        let unusable = self.unusable();
        self.touch();
        let fresh = self.confirmed_at.is_some_and(|c| c.elapsed() < msg.max_age)
            || self
                .home
                .cfg
                .feed
                .as_ref()
                .is_some_and(|f| f.vouches(self.state.id, self.state.version, self.confirmed_at, msg.max_age));
        if unusable.is_some() || fresh {
            let answer = match unusable {
                Some(e) => Err(e),
                None => Ok(self.read(false)),
            };
            return actix::AtomicResponse::new(Box::pin(actix::fut::ready(answer)));
        }
        let loader = Arc::clone(&self.home.loader);
        let id = self.state.id;
        let started = Instant::now();
        actix::AtomicResponse::new(Box::pin(
            async move {
                match tokio::task::spawn_blocking(move || loader(id)).await {
                    Ok(r) => r.map_err(AccountError::from),
                    Err(_) => Err(AccountError::Unavailable("snapshot load aborted".into())),
                }
            }
            .into_actor(self)
            .map(move |res, act: &mut Self, _| {
                act.load(res?);
                act.confirm(started);
                Ok(act.read(true))
            }),
        ))
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
        if let Some(e) = self.unusable() {
            return Err(e);
        }
        self.touch();
        Ok((self.state.balance, self.reserved, self.available().unwrap_or(0)))
    }
}

impl Registered for AccountActor {
    type Snapshot = AccountSnapshot;
    type Error = AccountError;

    fn build(id: AccountId, home: Home<Self>) -> Self {
        // Loaded in `started`, before the first message; version -1 accepts any stored state and
        // the zero floor refuses every debit should a message ever see the placeholder.
        AccountActor {
            state: AccountState { id, balance: 0, version: -1, ..Default::default() },
            floor: Some(0),
            reserved: 0,
            reservations: HashMap::new(),
            last_activity: Instant::now(),
            home,
            stale: true,
            retired: false,
            failed: None,
            keep_alive: None,
            confirmed_at: None,
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

    /// Reloads the committed state of `account` from the store (serialised with its other
    /// messages) and returns it. Called before a refusal is recorded, so a decline is never
    /// decided from a cache that another instance or an admin route made stale.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], [`AccountError::Busy`], [`AccountError::Unavailable`].
    pub async fn resync(&self, account: AccountId) -> Result<AccountState, AccountError> {
        self.inner.ask(account, Resync).await
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

    /// The account as a balance read needs it: from memory when the actor's state was confirmed
    /// against the store less than `max_age` ago, otherwise after reloading it (loads the actor if
    /// needed). Every commit acknowledged on any instance at least `max_age` before the call is
    /// reflected; commits through this instance's coordinator are reflected at once (the actor
    /// observes them before the caller is answered).
    ///
    /// # Errors
    /// [`AccountError::NotFound`], [`AccountError::Busy`], [`AccountError::Unavailable`].
    pub async fn read(&self, account: AccountId, max_age: Duration) -> Result<AccountRead, AccountError> {
        self.inner.ask(account, Read { max_age }).await
    }

    /// Whether every shard's registry answers within `timeout` (readiness).
    pub async fn responsive(&self, timeout: Duration) -> bool {
        self.inner.responsive(timeout).await
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
