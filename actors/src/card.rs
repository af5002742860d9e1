//! Owns card actors (kept by the shared sharded registry, `crate::registry`): cached card status/expiry checks that
//! gate debits and credits. Status changes are made in the store by the service, which
//! then pushes the new snapshot with [`CardsHandle::refresh`] (or evicts the actor).
//!
//! An actor loads its snapshot when it starts, before any message. Its cache is never trusted for a
//! refusal: the coordinator reloads the card ([`CardsHandle::reload`]) before recording a decline,
//! so a status changed through another instance cannot cause a false decline.
//!
//! Supervision mirrors the account actors: a panic in a handler is caught, the actor stops and is
//! restarted by its supervisor, and the snapshot is reloaded before any further message.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, MailboxError, Message, Supervised, WrapFuture,
};

use crate::account::ActorConfig;
use crate::registry::{guarded, AskError, Evict, Home, Loader, Registered, Sharded, Shutdown};
use crate::store::{AccountId, CardId, CardSnapshot, CardStatus, StoreError};

/// Blocking loader of card snapshots (run through `spawn_blocking`).
pub type CardLoader = Loader<CardSnapshot>;

/// Errors of card checks.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CardError {
    #[error("card frozen")]
    Frozen,
    #[error("card closed")]
    Closed,
    #[error("card expired")]
    Expired,
    #[error("card not found")]
    NotFound,
    /// The actor did not answer within the ask timeout.
    #[error("card busy")]
    Busy,
    #[error("card unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for CardError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            StoreError::Rejected { reason } => Self::Unavailable(reason),
            StoreError::Conflict { constraint } => Self::Unavailable(constraint),
            StoreError::Unavailable(m) | StoreError::Transient(m) => Self::Unavailable(m),
        }
    }
}

/// May this card be debited in month `today` = `(year, month)`? Replies the card's account.
#[derive(Debug, Clone, Copy)]
pub struct CheckDebit {
    pub today: (i32, u32),
}
impl Message for CheckDebit {
    type Result = Result<AccountId, CardError>;
}

/// May this card be credited? (Frozen cards may still receive credits.)
#[derive(Debug, Clone, Copy)]
pub struct CheckCredit;
impl Message for CheckCredit {
    type Result = Result<AccountId, CardError>;
}

/// Replace the cached snapshot.
#[derive(Debug, Clone)]
pub struct Refresh(pub CardSnapshot);
impl Message for Refresh {
    type Result = ();
}

/// Reload the snapshot from the store and answer it.
#[derive(Debug, Clone, Copy)]
pub struct Reload;
impl Message for Reload {
    type Result = Result<CardSnapshot, CardError>;
}

/// Read the cached snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Get;
impl Message for Get {
    type Result = Result<CardSnapshot, CardError>;
}

/// Card actor: the cached snapshot of one card.
pub struct CardActor {
    card: CardSnapshot,
    last_activity: Instant,
    home: Home<CardActor>,
    stale: bool,
    retired: bool,
    /// Why the snapshot could not be loaded; every message is answered with it until the actor stops.
    failed: Option<CardError>,
    /// Held while `failed`, so messages already queued are answered rather than dropped.
    keep_alive: Option<actix::Addr<CardActor>>,
}

impl fmt::Debug for CardActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardActor")
            .field("card", &self.card)
            .field("stale", &self.stale)
            .field("retired", &self.retired)
            .finish()
    }
}

const RETIRED: &str = "card actor retired";

impl CardActor {
    fn check_debit(&self, today: (i32, u32)) -> Result<AccountId, CardError> {
        match self.card.status {
            CardStatus::Closed => Err(CardError::Closed),
            CardStatus::Frozen => Err(CardError::Frozen),
            CardStatus::Active if self.card.expiry < today => Err(CardError::Expired),
            CardStatus::Active => Ok(self.card.account_id),
        }
    }

    fn check_credit(&self) -> Result<AccountId, CardError> {
        match self.card.status {
            CardStatus::Closed => Err(CardError::Closed),
            CardStatus::Active | CardStatus::Frozen => Ok(self.card.account_id),
        }
    }

    fn retire(&mut self, ctx: &mut Context<Self>) {
        ctx.wait(self.home.forget(self.card.id).into_actor(self).map(|_, act: &mut Self, ctx: &mut Context<Self>| {
            act.retired = true;
            ctx.stop();
        }));
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            self.keep_alive = None;
            ctx.stop();
        } else if self.last_activity.elapsed() >= self.home.cfg.idle_timeout {
            self.retire(ctx);
        }
    }

    fn unusable(&self) -> Option<CardError> {
        if let Some(e) = &self.failed {
            return Some(e.clone());
        }
        self.retired.then(|| CardError::Unavailable(RETIRED.into()))
    }

    /// Loads the snapshot before any further message is handled; a failed load leaves the actor
    /// answering the failure and retiring.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        let loader = Arc::clone(&self.home.loader);
        let id = self.card.id;
        let fut = tokio::task::spawn_blocking(move || loader(id));
        ctx.wait(fut.into_actor(self).map(move |res, act: &mut Self, ctx: &mut Context<Self>| {
            act.stale = false;
            let failure = match res {
                Ok(Ok(snap)) => {
                    act.card = CardSnapshot { id, ..snap };
                    return;
                }
                Ok(Err(e)) => CardError::from(e),
                Err(_) => CardError::Unavailable("snapshot load aborted".into()),
            };
            tracing::warn!(card = id, error = %failure, "card snapshot load failed");
            act.failed = Some(failure);
            act.keep_alive = Some(ctx.address());
            act.retire(ctx);
        }));
    }
}

impl Actor for CardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.home.cfg.sweep_interval, |act, ctx| act.sweep(ctx));
        if self.stale && !self.retired {
            self.resync(ctx);
        }
    }
}

impl Supervised for CardActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if !self.retired {
            tracing::warn!(card = self.card.id, "card actor restarting; resyncing");
            self.stale = true;
        }
    }
}

impl Handler<CheckDebit> for CardActor {
    type Result = Result<AccountId, CardError>;
    fn handle(&mut self, msg: CheckDebit, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.unusable() {
            return Err(e);
        }
        self.last_activity = Instant::now();
        let id = self.card.id;
        guarded(ctx, "card", id, || self.check_debit(msg.today))
            .unwrap_or_else(|| Err(CardError::Unavailable("card actor restarted after a fault".into())))
    }
}

impl Handler<CheckCredit> for CardActor {
    type Result = Result<AccountId, CardError>;
    fn handle(&mut self, _msg: CheckCredit, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.unusable() {
            return Err(e);
        }
        self.last_activity = Instant::now();
        let id = self.card.id;
        guarded(ctx, "card", id, || self.check_credit())
            .unwrap_or_else(|| Err(CardError::Unavailable("card actor restarted after a fault".into())))
    }
}

impl Handler<Reload> for CardActor {
    type Result = actix::ResponseActFuture<Self, Result<CardSnapshot, CardError>>;
    fn handle(&mut self, _msg: Reload, _ctx: &mut Context<Self>) -> Self::Result {
        let loader = Arc::clone(&self.home.loader);
        let id = self.card.id;
        let unusable = self.unusable();
        self.last_activity = Instant::now();
        Box::pin(
            async move {
                match unusable {
                    Some(e) => Err(e),
                    None => match tokio::task::spawn_blocking(move || loader(id)).await {
                        Ok(r) => r.map_err(CardError::from),
                        Err(_) => Err(CardError::Unavailable("snapshot load aborted".into())),
                    },
                }
            }
            .into_actor(self)
            .map(move |res, act: &mut Self, _| {
                let snap = res?;
                act.card = CardSnapshot { id, ..snap };
                Ok(act.card.clone())
            }),
        )
    }
}

impl Handler<Refresh> for CardActor {
    type Result = ();
    fn handle(&mut self, msg: Refresh, _ctx: &mut Context<Self>) {
        if msg.0.id == self.card.id {
            self.card = msg.0;
        }
    }
}

impl Handler<Get> for CardActor {
    type Result = Result<CardSnapshot, CardError>;
    fn handle(&mut self, _msg: Get, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = self.unusable() {
            return Err(e);
        }
        self.last_activity = Instant::now();
        Ok(self.card.clone())
    }
}

impl Handler<Shutdown> for CardActor {
    type Result = ();
    fn handle(&mut self, _msg: Shutdown, ctx: &mut Context<Self>) {
        self.retired = true;
        ctx.stop();
    }
}

impl Registered for CardActor {
    type Snapshot = CardSnapshot;
    type Error = CardError;

    fn build(id: CardId, home: Home<Self>) -> Self {
        // Loaded in `started`, before the first message; the placeholder refuses everything.
        CardActor {
            card: CardSnapshot { id, account_id: 0, owner_id: 0, status: CardStatus::Closed, expiry: (0, 1) },
            last_activity: Instant::now(),
            home,
            stale: true,
            retired: false,
            failed: None,
            keep_alive: None,
        }
    }
}

impl AskError for CardError {
    fn unavailable(reason: String) -> Self {
        Self::Unavailable(reason)
    }
    fn from_mailbox(e: MailboxError) -> Self {
        match e {
            MailboxError::Timeout => Self::Busy,
            MailboxError::Closed => Self::Unavailable("card actor stopped".into()),
        }
    }
    fn unavailable_reason(&self) -> Option<&str> {
        match self {
            Self::Unavailable(m) => Some(m),
            _ => None,
        }
    }
}

/// Cloneable entry point to the sharded card actors.
#[derive(Clone)]
pub struct CardsHandle {
    inner: Arc<Sharded<CardActor>>,
}

impl fmt::Debug for CardsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardsHandle").field("cfg", &self.inner.cfg).finish_non_exhaustive()
    }
}

impl CardsHandle {
    /// Starts `shards` (>= 1) arbiters, each running one card registry.
    /// Must be called inside a running actix `System`.
    pub fn new(shards: usize, store_loader: CardLoader, cfg: ActorConfig) -> Self {
        Self { inner: Arc::new(Sharded::new(shards, store_loader, cfg)) }
    }

    /// Checks that `card` may be debited in month `today`; returns its account.
    ///
    /// # Errors
    /// [`CardError::Frozen`], [`CardError::Closed`], [`CardError::Expired`],
    /// [`CardError::NotFound`], [`CardError::Busy`], [`CardError::Unavailable`].
    pub async fn check_debit(&self, card: CardId, today: (i32, u32)) -> Result<AccountId, CardError> {
        self.inner.ask(card, CheckDebit { today }).await
    }

    /// Checks that `card` may be credited; returns its account.
    ///
    /// # Errors
    /// [`CardError::Closed`], [`CardError::NotFound`], [`CardError::Busy`],
    /// [`CardError::Unavailable`].
    pub async fn check_credit(&self, card: CardId) -> Result<AccountId, CardError> {
        self.inner.ask(card, CheckCredit).await
    }

    /// The cached snapshot of `card` (loads the actor if needed).
    ///
    /// # Errors
    /// [`CardError::NotFound`], [`CardError::Busy`], [`CardError::Unavailable`].
    pub async fn get(&self, card: CardId) -> Result<CardSnapshot, CardError> {
        self.inner.ask(card, Get).await
    }

    /// Reloads `card` from the store and returns the fresh snapshot (used before a refusal is
    /// recorded, and after the store refused a commit).
    ///
    /// # Errors
    /// [`CardError::NotFound`], [`CardError::Busy`], [`CardError::Unavailable`].
    pub async fn reload(&self, card: CardId) -> Result<CardSnapshot, CardError> {
        self.inner.ask(card, Reload).await
    }

    /// Replaces the cached snapshot of a LIVE actor; no-op when none is live (the next
    /// load reads the store).
    pub fn refresh(&self, snapshot: CardSnapshot) {
        if let Some(e) = self.inner.live(snapshot.id) {
            e.addr.do_send(Refresh(snapshot));
        }
    }

    /// Forgets and stops the actor of `card` (if live); the next use reloads it.
    pub fn evict(&self, card: CardId) {
        if let Some(registry) = self.inner.registry(card) {
            registry.do_send(Evict(card));
        }
    }

    /// Whether every shard's registry answers within `timeout` (readiness).
    pub async fn responsive(&self, timeout: Duration) -> bool {
        self.inner.responsive(timeout).await
    }

    /// Number of live card actors across shards.
    pub fn live_actors(&self) -> usize {
        self.inner.live_actors()
    }

    /// The ask timeout used for every command.
    pub fn mailbox_timeout(&self) -> Duration {
        self.inner.cfg.ask_timeout
    }

    /// Stops every shard arbiter (and with them all card actors).
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}
