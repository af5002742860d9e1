//! The registry machinery shared by account and card actors: a registry actor per shard that starts
//! an entity's actor on first use (under a [`Supervisor`]) and forgets it when it retires, and
//! [`Sharded`], the cloneable front that finds or starts the actor for an id and asks it, retrying
//! when the actor stopped or retired underneath the caller.
//!
//! An actor is registered first and loads its own snapshot when it starts, before it handles any
//! message: there is no window between a load and the registration in which a commit could be
//! missed (the load/register race of loading first and registering the result).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::{
    Actor, ActorContext, Addr, Arbiter, ArbiterHandle, AsyncContext, Context, Handler, MailboxError, Message,
    MessageResult, Supervised, Supervisor,
};
use parking_lot::RwLock;

use crate::account::ActorConfig;
use crate::shard::{is_current, live_count, live_entry, shard_index, Entry, LiveMap};
use crate::store::StoreError;

/// Blocking loader of an entity's snapshot (run through `spawn_blocking`).
pub type Loader<S> = Arc<dyn Fn(i64) -> Result<S, StoreError> + Send + Sync>;

/// The error type of a registered actor's answers, as the registry needs it.
pub trait AskError: From<StoreError> + Send + 'static {
    /// The actor or store cannot answer now.
    fn unavailable(reason: String) -> Self;
    /// A mailbox failure (timeout = busy, closed = unavailable).
    fn from_mailbox(e: MailboxError) -> Self;
    /// The reason, when this is the "unavailable" answer (a stopped or retired actor).
    fn unavailable_reason(&self) -> Option<&str>;
}

/// An actor kept by a [`Registry`]: one per entity id, built from a snapshot.
pub trait Registered: Actor<Context = Context<Self>> + Supervised + Send {
    type Snapshot: Send + 'static;
    type Error: AskError;
    /// The actor for entity `id` under `home`, not yet loaded: it must load its snapshot through
    /// `home`'s loader in `started` (with `ctx.wait`) before handling any message.
    fn build(id: i64, home: Home<Self>) -> Self;
}

/// Runs a handler's body, catching a panic: the actor is stopped (its supervisor restarts it, which
/// clears its transient state and reloads its snapshot) and `None` is returned for the caller.
pub(crate) fn guarded<A, T>(ctx: &mut Context<A>, kind: &'static str, id: i64, body: impl FnOnce() -> T) -> Option<T>
where
    A: Actor<Context = Context<A>>,
{
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::error!(kind, id, "actor handler panicked; restarting the actor");
            crate::gauges::ACTOR_RESTARTS.fetch_add(1, Ordering::Relaxed);
            ctx.stop();
            None
        }
    }
}

/// What an actor keeps of its registry: where to report its retirement, its generation, the
/// loader to resync from and the tuning.
pub struct Home<A: Registered> {
    pub(crate) registry: Addr<Registry<A>>,
    pub(crate) generation: u64,
    pub(crate) loader: Loader<A::Snapshot>,
    pub(crate) cfg: ActorConfig,
}

impl<A: Registered> Home<A> {
    /// Asks the registry to forget this actor (if it is still the registered generation); await the
    /// answer before stopping, so no caller is handed an actor that is about to stop.
    pub(crate) fn forget(&self, id: i64) -> actix::dev::Request<Registry<A>, Forget> {
        self.registry.send(Forget { id, generation: self.generation })
    }
}

/// One shard's registry: starts actors in its arbiter and forgets retired ones.
pub struct Registry<A: Registered> {
    live: LiveMap<A>,
    cfg: ActorConfig,
    loader: Loader<A::Snapshot>,
    next_generation: u64,
}

impl<A: Registered> Actor for Registry<A> {
    type Context = Context<Self>;
}

struct Register<A: Registered> {
    id: i64,
    kind: std::marker::PhantomData<fn() -> A>,
}
impl<A: Registered> Message for Register<A> {
    type Result = (Addr<A>, u64);
}

/// Answers when the registry's arbiter is processing messages (readiness probe).
pub(crate) struct Ping;
impl Message for Ping {
    type Result = ();
}

impl<A: Registered> Handler<Ping> for Registry<A> {
    type Result = ();
    fn handle(&mut self, _msg: Ping, _ctx: &mut Context<Self>) {}
}

/// Removes `id` from the live map if `generation` is still the registered actor.
pub(crate) struct Forget {
    id: i64,
    generation: u64,
}
impl Message for Forget {
    type Result = ();
}

/// Removes `id` from the live map and stops its actor (the next use reloads it).
pub(crate) struct Evict(pub(crate) i64);
impl Message for Evict {
    type Result = ();
}

/// Tells an evicted actor to stop.
pub(crate) struct Shutdown;
impl Message for Shutdown {
    type Result = ();
}

impl<A: Registered> Handler<Register<A>> for Registry<A> {
    type Result = MessageResult<Register<A>>;
    fn handle(&mut self, msg: Register<A>, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(e) = live_entry(&self.live, msg.id) {
            return MessageResult((e.addr, e.generation));
        }
        self.next_generation += 1;
        let home = Home {
            registry: ctx.address(),
            generation: self.next_generation,
            loader: Arc::clone(&self.loader),
            cfg: self.cfg.clone(),
        };
        let generation = home.generation;
        let capacity = self.cfg.mailbox_capacity.max(1);
        let id = msg.id;
        let addr = Supervisor::start(move |c: &mut Context<A>| {
            c.set_mailbox_capacity(capacity);
            A::build(id, home)
        });
        self.live.write().insert(msg.id, Entry { addr: addr.clone(), generation });
        MessageResult((addr, generation))
    }
}

impl<A: Registered> Handler<Forget> for Registry<A> {
    type Result = ();
    fn handle(&mut self, msg: Forget, _ctx: &mut Context<Self>) {
        let mut map = self.live.write();
        if map.get(&msg.id).is_some_and(|e| e.generation == msg.generation) {
            map.remove(&msg.id);
        }
    }
}

impl<A: Registered + Handler<Shutdown>> Handler<Evict> for Registry<A> {
    type Result = ();
    fn handle(&mut self, msg: Evict, _ctx: &mut Context<Self>) {
        let removed = self.live.write().remove(&msg.0);
        if let Some(e) = removed {
            e.addr.do_send(Shutdown);
        }
    }
}

struct Shard<A: Registered> {
    arbiter: ArbiterHandle,
    registry: Addr<Registry<A>>,
    live: LiveMap<A>,
}

/// The shards of one kind of actor: finds, loads and asks the actor of an id.
pub(crate) struct Sharded<A: Registered> {
    shards: Vec<Shard<A>>,
    pub(crate) cfg: ActorConfig,
}

impl<A: Registered> Sharded<A> {
    /// Starts `shards` (>= 1) arbiters, each running one registry. Must be called inside a running
    /// actix `System`.
    pub(crate) fn new(shards: usize, loader: Loader<A::Snapshot>, cfg: ActorConfig) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                let arbiter = Arbiter::new().handle();
                let live: LiveMap<A> = Arc::new(RwLock::new(HashMap::new()));
                let (reg_live, reg_cfg, reg_loader) = (Arc::clone(&live), cfg.clone(), Arc::clone(&loader));
                let registry = Registry::start_in_arbiter(&arbiter, move |ctx| {
                    ctx.set_mailbox_capacity(4096);
                    Registry { live: reg_live, cfg: reg_cfg, loader: reg_loader, next_generation: 0 }
                });
                Shard { arbiter, registry, live }
            })
            .collect();
        Self { shards, cfg }
    }

    fn shard(&self, id: i64) -> Option<&Shard<A>> {
        self.shards.get(shard_index(id, self.shards.len()))
    }

    /// The live, connected actor of `id`, if one is running.
    pub(crate) fn live(&self, id: i64) -> Option<Entry<A>> {
        self.shard(id).and_then(|s| live_entry(&s.live, id))
    }

    /// The registry of `id`'s shard.
    pub(crate) fn registry(&self, id: i64) -> Option<&Addr<Registry<A>>> {
        self.shard(id).map(|s| &s.registry)
    }

    async fn actor(&self, id: i64) -> Result<Entry<A>, A::Error> {
        if let Some(e) = self.live(id) {
            return Ok(e);
        }
        let shard = self.shard(id).ok_or_else(|| A::Error::unavailable("no shard".into()))?;
        let (addr, generation) = shard
            .registry
            .send(Register::<A> { id, kind: std::marker::PhantomData })
            .timeout(self.cfg.ask_timeout)
            .await
            .map_err(A::Error::from_mailbox)?;
        Ok(Entry { addr, generation })
    }

    /// Asks the actor of `id` (loading it if needed), retrying (up to 3 attempts) when it stopped
    /// or retired underneath us.
    pub(crate) async fn ask<M, T>(&self, id: i64, msg: M) -> Result<T, A::Error>
    where
        M: Message<Result = Result<T, A::Error>> + Clone + Send + 'static,
        T: Send + 'static,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = attempt >= 3;
            let (request, generation) = {
                let entry = self.actor(id).await?;
                (entry.addr.send(msg.clone()), entry.generation)
            };
            crate::gauges::ASKS_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
            let answer = request.timeout(self.cfg.ask_timeout).await;
            crate::gauges::ASKS_IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
            match answer {
                Ok(Err(e)) if e.unavailable_reason().is_some() => {
                    let moved = self.shard(id).is_some_and(|s| !is_current(&s.live, id, generation));
                    if last || !moved {
                        return Err(e);
                    }
                }
                Ok(other) => return other,
                Err(MailboxError::Closed) if !last => {}
                Err(e) => return Err(A::Error::from_mailbox(e)),
            }
        }
    }

    /// Whether every shard's registry answers within `timeout` (its arbiter thread is alive).
    pub(crate) async fn responsive(&self, timeout: std::time::Duration) -> bool {
        for s in &self.shards {
            if s.registry.send(Ping).timeout(timeout).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Number of connected actors across shards.
    pub(crate) fn live_actors(&self) -> usize {
        self.shards.iter().map(|s| live_count(&s.live)).sum()
    }

    /// Stops every shard arbiter (and with them all their actors).
    pub(crate) fn shutdown(&self) {
        for s in &self.shards {
            s.arbiter.stop();
        }
    }
}
