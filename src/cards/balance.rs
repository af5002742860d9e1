//! Card balances: the current balance from the card's account actor (no database trip while the
//! actor's state is fresh enough), a point in time from the postings, and the admin list from the
//! account rows. The withdrawal totals are maintained by the ledger writer on the account row.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use payd_actors::{AccountError, CardError};

use crate::app::AppState;
use crate::cards::routes::{account_postings_below, BalanceView};
use crate::cards::{find_for, CardsError};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::ids::CardId;
use crate::ledger::store::last_withdrawal_at;
use crate::storage::schema::{accounts, cards, postings};
use crate::storage::{self, StorageError};

fn busy() -> ApiError {
    ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "busy", "the ledger is busy; retry shortly")
        .with_retry_after(1)
}

fn card_error(e: CardError) -> ApiError {
    match e {
        CardError::NotFound => CardsError::NotFound.into(),
        CardError::Busy => busy(),
        other => {
            tracing::warn!(error = %other, "card actor unavailable");
            ApiError::unavailable("ledger unavailable, retry later")
        }
    }
}

/// An account actor's failure as the API answers it (also the statement's, `cards::statements`).
pub(crate) fn account_error(e: AccountError) -> ApiError {
    match e {
        AccountError::NotFound => CardsError::NotFound.into(),
        AccountError::Busy => busy(),
        other => {
            tracing::warn!(error = %other, "account actor unavailable");
            ApiError::unavailable("ledger unavailable, retry later")
        }
    }
}

/// The current balance of a card the caller owns (any card for an admin), answered by the card and
/// account actors. It reflects every commit made through this instance before the call, and every
/// commit made anywhere at least `ledger.read_staleness_ms` before it.
///
/// # Errors
/// 404 unknown or another user's card, 503 when the actors are busy or unavailable.
pub async fn current(state: &AppState, user: &AuthUser, card_id: CardId) -> Result<BalanceView, ApiError> {
    let ledger = &state.ledger.ledger;
    let card = ledger.cards().get(card_id.get()).await.map_err(card_error)?;
    if card.owner_id != user.user_id.get() && !user.is_admin() {
        // Someone else's card answers exactly like a missing one (as `find_for`).
        return Err(CardsError::NotFound.into());
    }
    let max_age = Duration::from_millis(state.settings.ledger.read_staleness_ms);
    let read = ledger.accounts().read(card.account_id, max_age).await.map_err(account_error)?;
    crate::metrics::count("balance_read", if read.reloaded { "reloaded" } else { "memory" });
    // A card account's floor is minus its credit line (set once, at issue).
    let credit_limit = read.floor.map_or(0, |f| f.saturating_neg());
    Ok(BalanceView {
        card_id: card_id.get(),
        account_id: card.account_id,
        currency: state.settings.money.currency.clone(),
        balance: read.state.balance,
        available: read.available,
        credit_limit,
        total_withdrawn: read.state.totals.withdrawn,
        last_withdrawal_at: last_withdrawal_at(&read.state.totals),
        at: None,
    })
}

/// The balance of a card at a point in time: the running balance of its newest posting at or
/// before `at` (an index scan of `postings (account_id, id)` from the newest posting backwards), with
/// the current withdrawal totals.
///
/// # Errors
/// 404 as [`current`]; a storage error.
pub async fn at(state: &AppState, user: AuthUser, card_id: CardId, at: DateTime<Utc>) -> Result<BalanceView, ApiError> {
    let currency = state.settings.money.currency.clone();
    let view = storage::run(&state.db, move |conn| {
        let card = find_for(conn, card_id, &user)?;
        let balance: Option<i64> = postings::table
            .filter(account_postings_below(card.account_id.get(), i64::MAX))
            .filter(postings::created_at.le(at))
            .order((postings::account_id.desc(), postings::id.desc()))
            .select(postings::balance_after)
            .first(conn)
            .optional()?;
        let (withdrawn, last): (i64, Option<DateTime<Utc>>) = accounts::table
            .find(card.account_id)
            .select((accounts::total_withdrawn, accounts::last_withdrawal_at))
            .first(conn)?;
        let balance = balance.unwrap_or(0);
        Ok::<_, CardsError>(BalanceView {
            card_id: card.id.get(),
            account_id: card.account_id.get(),
            currency,
            balance,
            available: balance + card.credit_limit,
            credit_limit: card.credit_limit,
            total_withdrawn: withdrawn,
            last_withdrawal_at: last,
            at: Some(at),
        })
    })
    .await?;
    Ok(view)
}

/// One page of every card's balance, newest card first (keyset on `cards.id`).
///
/// # Errors
/// A storage error.
pub async fn all(state: &AppState, limit: i64, cursor: Option<i64>) -> Result<Vec<BalanceView>, ApiError> {
    type Row = (i64, i64, i64, i64, i64, Option<DateTime<Utc>>);
    let rows: Vec<Row> = storage::run(&state.db, move |conn| {
        cards::table
            .inner_join(accounts::table)
            .filter(cards::id.lt(cursor.unwrap_or(i64::MAX)))
            .order(cards::id.desc())
            .limit(limit + 1)
            .select((
                cards::id,
                cards::account_id,
                accounts::balance,
                cards::credit_limit,
                accounts::total_withdrawn,
                accounts::last_withdrawal_at,
            ))
            .load(conn)
            .map_err(StorageError::from)
    })
    .await?;
    let currency = &state.settings.money.currency;
    Ok(rows
        .into_iter()
        .map(|(card_id, account_id, balance, credit_limit, total_withdrawn, last_withdrawal_at)| BalanceView {
            card_id,
            account_id,
            currency: currency.clone(),
            balance,
            available: balance + credit_limit,
            credit_limit,
            total_withdrawn,
            last_withdrawal_at,
            at: None,
        })
        .collect())
}
