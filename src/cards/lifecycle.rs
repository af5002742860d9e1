//! A card's lifecycle as plain functions both transports call: freeze, unfreeze, close, archive,
//! restore ([`CardAction`]) and clearing a payment lock.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::app::AppState;
use crate::cards::routes::{card_event, insert_event};
use crate::cards::{find_for, Card, CardAction, CardStatus, CardView, CardsError};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::ids::CardId;
use crate::storage::schema::{accounts, cards};
use crate::storage::{self, StorageError};

/// Applies `action` to the caller's card (any card for an admin) if its state allows it.
///
/// # Errors
/// 404 unknown or another user's card, 409 a transition the card's state refuses or closing a
/// card whose balance is not zero, a storage error.
pub async fn apply(state: &AppState, user: AuthUser, id: CardId, action: CardAction) -> Result<CardView, ApiError> {
    let card = storage::transaction(&state.db, move |conn| {
        let card = find_for(conn, id, &user)?;
        let now = Utc::now();
        let bad = |c: &Card| CardsError::InvalidTransition {
            action: action.as_str(),
            current: if c.archived_at.is_some() { format!("{} and archived", c.status) } else { c.status.to_string() },
        };
        let Some((status, archived)) = action.apply(card.status, card.archived_at.is_some(), now) else {
            return Err(bad(&card));
        };
        // A conditional update: it applies only if the card is still in the state the decision was
        // made from. A concurrent transition that committed first (a `close`, say) makes this one
        // match nothing — READ COMMITTED re-checks the condition on the row it waited for — so a
        // late `unfreeze` can never undo a `close`.
        let mut q =
            diesel::update(cards::table).filter(cards::id.eq(id)).filter(cards::status.eq(card.status)).into_boxed();
        q = if card.archived_at.is_some() {
            q.filter(cards::archived_at.is_not_null())
        } else {
            q.filter(cards::archived_at.is_null())
        };
        let updated = q
            .set((
                cards::status.eq(status),
                cards::updated_at.eq(now),
                cards::archived_at.eq(archived.unwrap_or(card.archived_at)),
            ))
            .returning(Card::as_returning())
            .get_result::<Card>(conn)
            .optional()?;
        let Some(upd) = updated else {
            return Err(bad(&crate::cards::find(conn, id)?));
        };
        if status != card.status {
            // The ledger's guard reads the account's status; change both in this transaction (the card
            // row, locked above, serialises transitions of this card).
            let mut q = diesel::update(accounts::table.find(card.account_id)).into_boxed();
            if status == CardStatus::Closed {
                q = q.filter(accounts::balance.eq(0));
            }
            let n = q.set((accounts::status.eq(status), accounts::updated_at.eq(now))).execute(conn)?;
            if n == 0 {
                let (balance, _) = crate::cards::account_balance(conn, card.account_id)?;
                return Err(CardsError::NonZeroBalance(balance));
            }
        }
        insert_event(conn, &card_event(action.event_type(), &upd))?;
        Ok(upd)
    })
    .await?;
    state.cards.changed(card.id);
    // Tell a live card actor at once (the ledger guard already refuses debits either way).
    let snapshot = {
        let pool = state.db.clone();
        let cid = card.id;
        storage::run(&pool, move |conn| crate::ledger::store::load_card(conn, cid.get()).map_err(StorageError::from))
            .await
    };
    if let Ok(s) = snapshot {
        state.ledger.ledger.cards().refresh(s);
    }
    Ok(CardView::new(card, &state.settings.money.currency))
}

/// Clears a card's payment lock and its failure counter; answers the card (also when it was not locked).
///
/// # Errors
/// 404 unknown or another user's card, 503 the rate-limit store is down, a storage error.
pub async fn unlock(state: &AppState, user: AuthUser, id: CardId) -> Result<CardView, ApiError> {
    let by = user.user_id;
    let card = storage::transaction(&state.db, move |conn| {
        find_for(conn, id, &user)?;
        Ok::<_, CardsError>(
            diesel::update(cards::table.find(id))
                .set((cards::payments_locked_at.eq(None::<DateTime<Utc>>), cards::updated_at.eq(Utc::now())))
                .returning(Card::as_returning())
                .get_result(conn)?,
        )
    })
    .await?;
    state.cards.changed(id);
    state.cache.delete(&format!("cardfail:{id}")).await.map_err(|e| {
        tracing::warn!(error = %e, "redis unavailable");
        ApiError::unavailable("rate-limit store unavailable, retry later")
    })?;
    tracing::info!(card_id = %id, by = %by, "card unlocked for payments");
    Ok(CardView::new(card, &state.settings.money.currency))
}
