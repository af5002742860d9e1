//! Owns the payments coordinator: runs one payment operation end to end (card checks,
//! reservation, durable commit through the writer, release/observe, recording of failed
//! attempts) and the [`Ledger`] facade bundling every handle.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, ArbiterHandle, Context, Handler, MailboxError, Message, ResponseFuture};
use tracing::Instrument;

use crate::account::{AccountError, AccountsHandle, ReservationId};
use crate::card::{CardError, CardsHandle};
use crate::store::{AccountId, AccountState, CardId, JournalEntry, Posting, Refusal};
use crate::writer::{CommitError, WriterHandle};

/// Business reason of a recorded failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureReason {
    SameAccount,
    CardFrozen,
    CardClosed,
    CardExpired,
    InsufficientFunds,
    /// A refund would exceed what is left of its payment.
    RefundExceeded,
    /// An integrity rule of the store refused the entry (reason as reported by the store, for
    /// logs only: never shown to clients).
    Rejected(String),
}

impl FailureReason {
    /// Stable machine code: `same_account`, `card_frozen`, `card_closed`, `card_expired`,
    /// `insufficient_funds`, `refund_exceeded`, `rejected`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::SameAccount => "same_account",
            Self::CardFrozen => "card_frozen",
            Self::CardClosed => "card_closed",
            Self::CardExpired => "card_expired",
            Self::InsufficientFunds => "insufficient_funds",
            Self::RefundExceeded => "refund_exceeded",
            Self::Rejected(_) => "rejected",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => write!(f, "rejected: {r}"),
            other => f.write_str(other.code()),
        }
    }
}

/// Infrastructure error that prevented an operation (nothing recorded for it).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ExecError {
    #[error("card: {0}")]
    Card(CardError),
    #[error("account: {0}")]
    Account(AccountError),
    #[error("ledger writer: {0}")]
    Commit(CommitError),
    /// The card belongs to another account than the operation names.
    #[error("card {card} belongs to account {actual}, not {expected}")]
    CardAccountMismatch { card: CardId, expected: AccountId, actual: AccountId },
}

/// A successful operation: committed states of the accounts touched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub states: Vec<AccountState>,
}

/// Why an operation did not succeed.
#[derive(Debug)]
pub enum OpFailure<R> {
    /// A failed attempt was durably recorded (no postings) with this reason.
    Recorded { reason: FailureReason },
    /// Another request with the same idempotency key won; nothing recorded for this one.
    Duplicate,
    /// A uniqueness rule of the operation itself (e.g. one successful payment per order
    /// reference, one reversal per operation) refused it; nothing recorded.
    Conflict(String),
    /// Nothing was recorded (card/account lookup, busy, unavailable, ...); safe to retry.
    NotRecorded(ExecError),
    /// A business failure was decided but recording it failed. `record` is the failure
    /// record when the writer never took ownership of it (e.g. writer busy).
    Unrecorded { reason: FailureReason, error: ExecError, record: Option<R> },
    /// The coordinator did not answer in time (or stopped): the outcome is UNKNOWN; the
    /// caller must look the operation up (e.g. by idempotency key).
    Unknown(String),
}

impl<R> fmt::Display for OpFailure<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Recorded { reason } => write!(f, "failed: {reason}"),
            Self::Duplicate => f.write_str("duplicate operation"),
            Self::Conflict(c) => write!(f, "conflicts with an existing operation ({c})"),
            Self::NotRecorded(e) => write!(f, "not recorded: {e}"),
            Self::Unrecorded { reason, error, .. } => {
                write!(f, "failed ({reason}) but not recorded: {error}")
            }
            Self::Unknown(m) => write!(f, "outcome unknown: {m}"),
        }
    }
}

/// One payment operation.
pub struct Operation<R> {
    /// Card whose `CheckDebit` must pass (None for top-ups).
    pub debit_card: Option<CardId>,
    /// Card whose `CheckCredit` must pass.
    pub credit_card: Option<CardId>,
    /// Account reserved (if it has a floor) and debited.
    pub debit_account: AccountId,
    pub credit_account: AccountId,
    /// Minor units, > 0.
    pub amount: i64,
    /// `(year, month)` used for card expiry.
    pub today: (i32, u32),
    /// Builds the success record (postings are `[debit -amount, credit +amount]`); called again
    /// with the same result when the operation is decided a second time on confirmed state.
    pub on_success: Box<dyn Fn() -> R + Send>,
    /// Builds the record of a failed attempt (recorded with NO postings).
    pub on_failure: Box<dyn FnOnce(FailureReason) -> R + Send>,
    /// Entered while the operation runs so traces connect.
    pub span: tracing::Span,
}

impl<R> fmt::Debug for Operation<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("debit_card", &self.debit_card)
            .field("credit_card", &self.credit_card)
            .field("debit_account", &self.debit_account)
            .field("credit_account", &self.credit_account)
            .field("amount", &self.amount)
            .field("today", &self.today)
            .finish_non_exhaustive()
    }
}

/// Run one operation.
#[derive(Debug)]
pub struct Execute<R> {
    pub op: Operation<R>,
}

impl<R: Send + 'static> Message for Execute<R> {
    type Result = Result<Committed, OpFailure<R>>;
}

/// Coordinator actor; every `Execute` runs as its own future, so operations overlap.
pub struct PaymentsCoordinator<R> {
    accounts: AccountsHandle,
    cards: CardsHandle,
    writer: WriterHandle<R>,
    mailbox_capacity: usize,
}

impl<R: Send + 'static> PaymentsCoordinator<R> {
    /// A coordinator over these handles (start it with `Actor::start*`).
    pub fn new(accounts: AccountsHandle, cards: CardsHandle, writer: WriterHandle<R>, mailbox_capacity: usize) -> Self {
        Self { accounts, cards, writer, mailbox_capacity }
    }
}

impl<R: Send + 'static> Actor for PaymentsCoordinator<R> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox_capacity.max(1));
    }
}

impl<R: Send + 'static> Handler<Execute<R>> for PaymentsCoordinator<R> {
    type Result = ResponseFuture<Result<Committed, OpFailure<R>>>;

    fn handle(&mut self, msg: Execute<R>, _ctx: &mut Context<Self>) -> Self::Result {
        let span = msg.op.span.clone();
        let fut = run(self.accounts.clone(), self.cards.clone(), self.writer.clone(), msg.op);
        Box::pin(fut.instrument(span))
    }
}

async fn opt<T, F: Future<Output = T>>(f: Option<F>) -> Option<T> {
    match f {
        Some(f) => Some(f.await),
        None => None,
    }
}

fn card_failure<R>(
    card: CardId,
    expected: AccountId,
    res: Option<Result<AccountId, CardError>>,
) -> Result<(), Result<FailureReason, OpFailure<R>>> {
    match res {
        None => Ok(()),
        Some(Ok(actual)) if actual == expected => Ok(()),
        Some(Ok(actual)) => Err(Err(OpFailure::NotRecorded(ExecError::CardAccountMismatch { card, expected, actual }))),
        Some(Err(CardError::Frozen)) => Err(Ok(FailureReason::CardFrozen)),
        Some(Err(CardError::Closed)) => Err(Ok(FailureReason::CardClosed)),
        Some(Err(CardError::Expired)) => Err(Ok(FailureReason::CardExpired)),
        Some(Err(e)) => Err(Err(OpFailure::NotRecorded(ExecError::Card(e)))),
    }
}

async fn record_failure<R: Send + 'static>(
    writer: &WriterHandle<R>,
    on_failure: Box<dyn FnOnce(FailureReason) -> R + Send>,
    reason: FailureReason,
) -> Result<Committed, OpFailure<R>> {
    tracing::info!(reason = reason.code(), "recording failed attempt");
    let entry = JournalEntry { postings: Vec::new(), record: on_failure(reason.clone()) };
    match writer.commit_or_return(entry).await {
        Ok(_) => Err(OpFailure::Recorded { reason }),
        Err((CommitError::Duplicate, _)) => Err(OpFailure::Duplicate),
        Err((CommitError::Conflict { constraint }, _)) => Err(OpFailure::Conflict(constraint)),
        Err((error, entry)) => {
            Err(OpFailure::Unrecorded { reason, error: ExecError::Commit(error), record: entry.map(|e| e.record) })
        }
    }
}

/// The business reason of a refusal decided by the store on its committed, locked state.
fn refusal_reason(refusal: Refusal) -> FailureReason {
    match refusal {
        Refusal::InsufficientFunds { .. } => FailureReason::InsufficientFunds,
        Refusal::Frozen { .. } => FailureReason::CardFrozen,
        Refusal::Closed { .. } => FailureReason::CardClosed,
        Refusal::RefundExceeded => FailureReason::RefundExceeded,
        Refusal::UnknownAccount { account } => FailureReason::Rejected(format!("unknown account {account}")),
    }
}

/// Reloads the operation's cards from the store (before a refusal is trusted).
async fn reload_cards<R>(
    cards: &CardsHandle,
    debit: Option<CardId>,
    credit: Option<CardId>,
) -> Result<(), OpFailure<R>> {
    for card in [debit, credit].into_iter().flatten() {
        cards.reload(card).await.map_err(|e| OpFailure::NotRecorded(ExecError::Card(e)))?;
    }
    Ok(())
}

async fn run<R: Send + 'static>(
    accounts: AccountsHandle,
    cards: CardsHandle,
    writer: WriterHandle<R>,
    op: Operation<R>,
) -> Result<Committed, OpFailure<R>> {
    let Operation {
        debit_card,
        credit_card,
        debit_account,
        credit_account,
        amount,
        today,
        on_success,
        on_failure,
        span: _,
    } = op;

    if debit_account == credit_account {
        return record_failure(&writer, on_failure, FailureReason::SameAccount).await;
    }
    let negated = match amount.checked_neg() {
        Some(n) if amount > 0 => n,
        _ => return Err(OpFailure::NotRecorded(ExecError::Account(AccountError::InvalidAmount))),
    };

    // A refusal is recorded only once it was decided on state confirmed by the store: a refusal
    // from the actors' caches first reloads them from PostgreSQL and decides again, and a commit the
    // store refused (its guard saw newer state, e.g. a debit through another instance) is decided
    // again once the actors observed what the store reported.
    let mut confirmed = false;
    loop {
        let (debit_check, credit_check) = tokio::join!(
            opt(debit_card.map(|c| cards.check_debit(c, today))),
            opt(credit_card.map(|c| cards.check_credit(c))),
        );
        let mut refused = None;
        for (card, expected, res) in
            [(debit_card, debit_account, debit_check), (credit_card, credit_account, credit_check)]
        {
            match card_failure::<R>(card.unwrap_or_default(), expected, res) {
                Ok(()) => {}
                Err(Ok(reason)) => {
                    refused.get_or_insert(reason);
                }
                Err(Err(not_recorded)) => return Err(not_recorded),
            }
        }
        if let Some(reason) = refused {
            if confirmed {
                return record_failure(&writer, on_failure, reason).await;
            }
            reload_cards(&cards, debit_card, credit_card).await?;
            confirmed = true;
            continue;
        }

        let rid = ReservationId::next();
        match accounts.reserve(debit_account, rid, amount).await {
            Ok(()) => {}
            Err(AccountError::InsufficientFunds { available }) => {
                if confirmed {
                    tracing::debug!(available, amount, "insufficient funds");
                    return record_failure(&writer, on_failure, FailureReason::InsufficientFunds).await;
                }
                accounts.resync(debit_account).await.map_err(|e| OpFailure::NotRecorded(ExecError::Account(e)))?;
                confirmed = true;
                continue;
            }
            Err(e) => {
                // A timed-out reserve may still land later; the release queues behind it.
                accounts.release(debit_account, rid, Vec::new()).await;
                return Err(OpFailure::NotRecorded(ExecError::Account(e)));
            }
        }

        let entry = JournalEntry {
            postings: vec![
                Posting { account: debit_account, amount: negated },
                Posting { account: credit_account, amount },
            ],
            record: on_success(),
        };
        match writer.commit_or_return(entry).await {
            Ok(states) => {
                accounts.release(debit_account, rid, states.clone()).await;
                for s in states.iter().filter(|s| s.id != debit_account) {
                    accounts.observe(*s);
                }
                return Ok(Committed { states });
            }
            Err((CommitError::Refused { refusal, current }, _)) => {
                accounts.release(debit_account, rid, current.clone()).await;
                for s in current.iter().filter(|s| s.id != debit_account) {
                    accounts.observe(*s);
                }
                if confirmed {
                    return record_failure(&writer, on_failure, refusal_reason(refusal)).await;
                }
                tracing::debug!(?refusal, "the store refused a commit the caches allowed; deciding again");
                reload_cards(&cards, debit_card, credit_card).await?;
                confirmed = true;
            }
            Err((CommitError::Duplicate, _)) => {
                accounts.release(debit_account, rid, Vec::new()).await;
                return Err(OpFailure::Duplicate);
            }
            Err((CommitError::Conflict { constraint }, _)) => {
                accounts.release(debit_account, rid, Vec::new()).await;
                return Err(OpFailure::Conflict(constraint));
            }
            Err((CommitError::Rejected { reason, current }, _)) => {
                accounts.release(debit_account, rid, current.clone()).await;
                for s in current.iter().filter(|s| s.id != debit_account) {
                    accounts.observe(*s);
                }
                return record_failure(&writer, on_failure, FailureReason::Rejected(reason)).await;
            }
            Err((e, _)) => {
                accounts.release(debit_account, rid, Vec::new()).await;
                return Err(OpFailure::NotRecorded(ExecError::Commit(e)));
            }
        }
    }
}

/// Facade bundling the account, card and writer handles plus the coordinator.
pub struct Ledger<R: Send + 'static> {
    accounts: AccountsHandle,
    cards: CardsHandle,
    writer: WriterHandle<R>,
    coordinator: Addr<PaymentsCoordinator<R>>,
    arbiter: ArbiterHandle,
    exec_timeout: Duration,
}

impl<R> Clone for Ledger<R>
where
    R: Send + 'static,
{
    fn clone(&self) -> Self {
        Self {
            accounts: self.accounts.clone(),
            cards: self.cards.clone(),
            writer: self.writer.clone(),
            coordinator: self.coordinator.clone(),
            arbiter: self.arbiter.clone(),
            exec_timeout: self.exec_timeout,
        }
    }
}

impl<R: Send + 'static> fmt::Debug for Ledger<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("accounts", &self.accounts)
            .field("cards", &self.cards)
            .field("exec_timeout", &self.exec_timeout)
            .finish_non_exhaustive()
    }
}

impl<R: Send + 'static> Ledger<R> {
    /// Starts the coordinator on its own arbiter. `exec_timeout` bounds
    /// [`execute`](Self::execute); choose it above the worst internal latency (card and
    /// account asks plus the writer's retries). Must be called inside an actix `System`.
    pub fn start(
        accounts: AccountsHandle,
        cards: CardsHandle,
        writer: WriterHandle<R>,
        exec_timeout: Duration,
        coordinator_mailbox: usize,
    ) -> Self {
        let arbiter = Arbiter::new().handle();
        let (a, c, w) = (accounts.clone(), cards.clone(), writer.clone());
        let coordinator = PaymentsCoordinator::start_in_arbiter(&arbiter, move |_| {
            PaymentsCoordinator::new(a, c, w, coordinator_mailbox)
        });
        Self { accounts, cards, writer, coordinator, arbiter, exec_timeout }
    }

    /// Runs `op` end to end.
    ///
    /// # Errors
    /// [`OpFailure::Recorded`] (business failure, durably recorded),
    /// [`OpFailure::Duplicate`], [`OpFailure::NotRecorded`], [`OpFailure::Unrecorded`],
    /// [`OpFailure::Unknown`] when the coordinator timed out / stopped (outcome unknown).
    pub async fn execute(&self, op: Operation<R>) -> Result<Committed, OpFailure<R>> {
        match self.coordinator.send(Execute { op }).timeout(self.exec_timeout).await {
            Ok(r) => r,
            Err(MailboxError::Timeout) => Err(OpFailure::Unknown("coordinator timeout".into())),
            Err(MailboxError::Closed) => Err(OpFailure::Unknown("coordinator stopped".into())),
        }
    }

    /// The account actors.
    pub fn accounts(&self) -> &AccountsHandle {
        &self.accounts
    }
    /// The card actors.
    pub fn cards(&self) -> &CardsHandle {
        &self.cards
    }
    /// The ledger writer.
    pub fn writer(&self) -> &WriterHandle<R> {
        &self.writer
    }
    /// The coordinator actor.
    pub fn coordinator(&self) -> &Addr<PaymentsCoordinator<R>> {
        &self.coordinator
    }

    /// Stops the coordinator arbiter and the account/card shard arbiters.
    pub fn shutdown(&self) {
        self.arbiter.stop();
        self.accounts.shutdown();
        self.cards.shutdown();
    }
}
