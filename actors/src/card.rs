//! Owns card actors (kept by the shared sharded registry, `crate::registry`): cached card status/expiry checks that
//! gate debits and credits. Status changes are made in the store by the service, which
//! then pushes the new snapshot with [`CardsHandle::refresh`] (or evicts the actor).
//!
//! Supervision mirrors the account actors: on restart the snapshot is reloaded through
//! the loader before any further message is handled.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, MailboxError, Message, Supervised, WrapFuture,
};

use crate::account::ActorConfig;
use crate::registry::{AskError, Evict, Home, Loader, Registered, Sharded, Shutdown};
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
            StoreError::Unavailable(m) => Self::Unavailable(m),
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
            ctx.stop();
        } else if self.last_activity.elapsed() >= self.home.cfg.idle_timeout {
            self.retire(ctx);
        }
    }

    fn resync(&mut self, ctx: &mut Context<Self>) {
        let loader = Arc::clone(&self.home.loader);
        let id = self.card.id;
        let fut = tokio::task::spawn_blocking(move || loader(id));
        ctx.wait(fut.into_actor(self).map(move |res, act: &mut Self, _| {
            match res {
                Ok(Ok(snap)) => act.card = snap,
                Ok(Err(e)) => tracing::warn!(card = id, error = %e, "card resync failed"),
                Err(e) => tracing::warn!(card = id, error = %e, "card resync failed"),
            }
            act.stale = false;
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
    fn handle(&mut self, msg: CheckDebit, _ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(CardError::Unavailable(RETIRED.into()));
        }
        self.last_activity = Instant::now();
        self.check_debit(msg.today)
    }
}

impl Handler<CheckCredit> for CardActor {
    type Result = Result<AccountId, CardError>;
    fn handle(&mut self, _msg: CheckCredit, _ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Err(CardError::Unavailable(RETIRED.into()));
        }
        self.last_activity = Instant::now();
        self.check_credit()
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
        if self.retired {
            return Err(CardError::Unavailable(RETIRED.into()));
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

    fn build(id: CardId, snapshot: CardSnapshot, home: Home<Self>) -> Self {
        CardActor {
            card: CardSnapshot { id, ..snapshot },
            last_activity: Instant::now(),
            home,
            stale: false,
            retired: false,
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
