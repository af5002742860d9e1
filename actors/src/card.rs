//! Owns card actors and their sharded registry: cached card status/expiry checks that
//! gate debits and credits. Status changes are made in the store by the service, which
//! then pushes the new snapshot with [`CardsHandle::refresh`] (or evicts the actor).
//!
//! Supervision mirrors the account actors: on restart the snapshot is reloaded through
//! the loader before any further message is handled.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, Arbiter, ArbiterHandle, AsyncContext, Context, Handler, MailboxError,
    Message, MessageResult, Supervised, Supervisor, WrapFuture,
};
use parking_lot::RwLock;

use crate::account::ActorConfig;
use crate::shard::{is_current, live_count, live_entry, shard_index, Entry, LiveMap};
use crate::store::{AccountId, CardId, CardSnapshot, CardStatus, StoreError};

/// Blocking loader of card snapshots (run through `spawn_blocking`).
pub type CardLoader = Arc<dyn Fn(CardId) -> Result<CardSnapshot, StoreError> + Send + Sync>;

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

struct Shutdown;
impl Message for Shutdown {
    type Result = ();
}

/// Card actor: the cached snapshot of one card.
pub struct CardActor {
    card: CardSnapshot,
    last_activity: Instant,
    cfg: ActorConfig,
    registry: Addr<CardRegistry>,
    generation: u64,
    loader: CardLoader,
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
        let forget = Forget { id: self.card.id, generation: self.generation };
        ctx.wait(self.registry.send(forget).into_actor(self).map(|_, act: &mut Self, ctx: &mut Context<Self>| {
            act.retired = true;
            ctx.stop();
        }));
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            ctx.stop();
        } else if self.last_activity.elapsed() >= self.cfg.idle_timeout {
            self.retire(ctx);
        }
    }

    fn resync(&mut self, ctx: &mut Context<Self>) {
        let loader = Arc::clone(&self.loader);
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
        ctx.run_interval(self.cfg.sweep_interval, |act, ctx| act.sweep(ctx));
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

/// One shard's registry: starts card actors in its arbiter, forgets idle/evicted ones.
pub struct CardRegistry {
    live: LiveMap<CardActor>,
    cfg: ActorConfig,
    loader: CardLoader,
    next_generation: u64,
}

impl Actor for CardRegistry {
    type Context = Context<Self>;
}

struct Register {
    id: CardId,
    snapshot: CardSnapshot,
}
impl Message for Register {
    type Result = (Addr<CardActor>, u64);
}

struct Forget {
    id: CardId,
    generation: u64,
}
impl Message for Forget {
    type Result = ();
}

struct Evict(CardId);
impl Message for Evict {
    type Result = ();
}

impl Handler<Register> for CardRegistry {
    type Result = MessageResult<Register>;
    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = live_entry(&self.live, msg.id) {
            return MessageResult((e.addr, e.generation));
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        let registry = ctx.address();
        let cfg = self.cfg.clone();
        let loader = Arc::clone(&self.loader);
        let card = CardSnapshot { id: msg.id, ..msg.snapshot };
        let addr = Supervisor::start(move |c: &mut Context<CardActor>| {
            c.set_mailbox_capacity(cfg.mailbox_capacity.max(1));
            CardActor {
                card,
                last_activity: Instant::now(),
                cfg,
                registry,
                generation,
                loader,
                stale: false,
                retired: false,
            }
        });
        self.live.write().insert(msg.id, Entry { addr: addr.clone(), generation });
        MessageResult((addr, generation))
    }
}

impl Handler<Forget> for CardRegistry {
    type Result = ();
    fn handle(&mut self, msg: Forget, _ctx: &mut Context<Self>) {
        let mut map = self.live.write();
        if map.get(&msg.id).is_some_and(|e| e.generation == msg.generation) {
            map.remove(&msg.id);
        }
    }
}

impl Handler<Evict> for CardRegistry {
    type Result = ();
    fn handle(&mut self, msg: Evict, _ctx: &mut Context<Self>) {
        let removed = self.live.write().remove(&msg.0);
        if let Some(e) = removed {
            e.addr.do_send(Shutdown);
        }
    }
}

struct Shard {
    arbiter: ArbiterHandle,
    registry: Addr<CardRegistry>,
    live: LiveMap<CardActor>,
}

struct Inner {
    shards: Vec<Shard>,
    loader: CardLoader,
    cfg: ActorConfig,
}

/// Cloneable entry point to the sharded card actors.
#[derive(Clone)]
pub struct CardsHandle {
    inner: Arc<Inner>,
}

impl fmt::Debug for CardsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardsHandle").field("shards", &self.inner.shards.len()).field("cfg", &self.inner.cfg).finish()
    }
}

fn map_mailbox(e: MailboxError) -> CardError {
    match e {
        MailboxError::Timeout => CardError::Busy,
        MailboxError::Closed => CardError::Unavailable("card actor stopped".into()),
    }
}

impl CardsHandle {
    /// Starts `shards` (>= 1) arbiters, each running one [`CardRegistry`].
    /// Must be called inside a running actix `System`.
    pub fn new(shards: usize, store_loader: CardLoader, cfg: ActorConfig) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                let arbiter = Arbiter::new().handle();
                let live: LiveMap<CardActor> = Arc::new(RwLock::new(HashMap::new()));
                let reg_live = Arc::clone(&live);
                let reg_cfg = cfg.clone();
                let reg_loader = Arc::clone(&store_loader);
                let registry = CardRegistry::start_in_arbiter(&arbiter, move |ctx| {
                    ctx.set_mailbox_capacity(4096);
                    CardRegistry { live: reg_live, cfg: reg_cfg, loader: reg_loader, next_generation: 0 }
                });
                Shard { arbiter, registry, live }
            })
            .collect();
        Self { inner: Arc::new(Inner { shards, loader: store_loader, cfg }) }
    }

    fn shard(&self, id: CardId) -> Option<&Shard> {
        self.inner.shards.get(shard_index(id, self.inner.shards.len()))
    }

    fn live(&self, id: CardId) -> Option<Entry<CardActor>> {
        self.shard(id).and_then(|s| live_entry(&s.live, id))
    }

    async fn actor(&self, id: CardId) -> Result<Entry<CardActor>, CardError> {
        if let Some(e) = self.live(id) {
            return Ok(e);
        }
        let loader = Arc::clone(&self.inner.loader);
        let snapshot = tokio::task::spawn_blocking(move || loader(id))
            .await
            .map_err(|e| CardError::Unavailable(e.to_string()))??;
        let shard = self.shard(id).ok_or_else(|| CardError::Unavailable("no shard".into()))?;
        let (addr, generation) = shard
            .registry
            .send(Register { id, snapshot })
            .timeout(self.inner.cfg.ask_timeout)
            .await
            .map_err(map_mailbox)?;
        Ok(Entry { addr, generation })
    }

    async fn ask<M, T>(&self, id: CardId, msg: M) -> Result<T, CardError>
    where
        M: Message<Result = Result<T, CardError>> + Clone + Send + 'static,
        T: Send + 'static,
        CardActor: Handler<M>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = attempt >= 3;
            let (request, generation) = {
                let entry = self.actor(id).await?;
                (entry.addr.send(msg.clone()), entry.generation)
            };
            match request.timeout(self.inner.cfg.ask_timeout).await {
                Ok(Err(CardError::Unavailable(m))) => {
                    let moved = self.shard(id).is_some_and(|s| !is_current(&s.live, id, generation));
                    if last || !moved {
                        return Err(CardError::Unavailable(m));
                    }
                }
                Ok(other) => return other,
                Err(MailboxError::Closed) if !last => {}
                Err(e) => return Err(map_mailbox(e)),
            }
        }
    }

    /// Checks that `card` may be debited in month `today`; returns its account.
    ///
    /// # Errors
    /// [`CardError::Frozen`], [`CardError::Closed`], [`CardError::Expired`],
    /// [`CardError::NotFound`], [`CardError::Busy`], [`CardError::Unavailable`].
    pub async fn check_debit(&self, card: CardId, today: (i32, u32)) -> Result<AccountId, CardError> {
        self.ask(card, CheckDebit { today }).await
    }

    /// Checks that `card` may be credited; returns its account.
    ///
    /// # Errors
    /// [`CardError::Closed`], [`CardError::NotFound`], [`CardError::Busy`],
    /// [`CardError::Unavailable`].
    pub async fn check_credit(&self, card: CardId) -> Result<AccountId, CardError> {
        self.ask(card, CheckCredit).await
    }

    /// The cached snapshot of `card` (loads the actor if needed).
    ///
    /// # Errors
    /// [`CardError::NotFound`], [`CardError::Busy`], [`CardError::Unavailable`].
    pub async fn get(&self, card: CardId) -> Result<CardSnapshot, CardError> {
        self.ask(card, Get).await
    }

    /// Replaces the cached snapshot of a LIVE actor; no-op when none is live (the next
    /// load reads the store).
    pub fn refresh(&self, snapshot: CardSnapshot) {
        if let Some(e) = self.live(snapshot.id) {
            e.addr.do_send(Refresh(snapshot));
        }
    }

    /// Forgets and stops the actor of `card` (if live); the next use reloads it.
    pub fn evict(&self, card: CardId) {
        if let Some(s) = self.shard(card) {
            s.registry.do_send(Evict(card));
        }
    }

    /// Number of live card actors across shards.
    pub fn live_actors(&self) -> usize {
        self.inner.shards.iter().map(|s| live_count(&s.live)).sum()
    }

    /// The ask timeout used for every command.
    pub fn mailbox_timeout(&self) -> Duration {
        self.inner.cfg.ask_timeout
    }

    /// Stops every shard arbiter (and with them all card actors).
    pub fn shutdown(&self) {
        for s in &self.inner.shards {
            s.arbiter.stop();
        }
    }
}
