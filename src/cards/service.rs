//! Cards as plain functions both transports call: issue, read, list. Inputs are the validated
//! request types of `cards::routes` and the caller's identity.

use chrono::{DateTime, Datelike, Utc};
use diesel::prelude::*;

use crate::app::AppState;
use crate::cards::pan;
use crate::cards::routes::{
    card_event, insert_event, list_query, status_filter, CardListQuery, IssueCardRequest, IssuedCard, UpdateCardRequest,
};
use crate::cards::{Card, CardView, CardsError};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::Page;
use crate::ids::{CardId, UserId};
use crate::storage;
use crate::storage::schema::{accounts, cards, users};

/// Issues a card to the caller (admins: to anyone, with a credit line); the full number and CVV
/// are in the answer only.
///
/// # Errors
/// 403 for admin-only options, 422 bad input or unknown user, a storage error.
pub async fn issue(state: &AppState, user: &AuthUser, body: IssueCardRequest) -> Result<IssuedCard, ApiError> {
    let owner = body.user_id.unwrap_or(user.user_id);
    if owner != user.user_id && !user.is_admin() {
        return Err(CardsError::AdminOnly("issue cards for other users").into());
    }
    let limit = body.credit_limit.unwrap_or(0);
    if limit > 0 && !user.is_admin() {
        return Err(CardsError::AdminOnly("grant a credit line").into());
    }
    if limit > 0 && body.card_type != "credit" {
        return Err(ApiError::validation("credit_limit", "only credit cards have a credit_limit"));
    }
    let Some(network) = state.settings.cards.network(&body.brand).cloned() else {
        let names: Vec<&str> = state.settings.cards.networks.iter().map(|n| n.name.as_str()).collect();
        return Err(ApiError::validation("brand", format!("brand must be one of: {}", names.join(", "))));
    };
    let st = state.clone();
    let (card, number, cvv) = storage::transaction(&state.db, move |conn| {
        let active: Option<Option<DateTime<Utc>>> =
            users::table.find(owner).select(users::archived_at).first(conn).optional()?;
        if !matches!(active, Some(None)) {
            return Err(CardsError::UnknownUser);
        }
        let cs = &st.settings;
        let account_id: i64 = diesel::insert_into(accounts::table)
            .values((
                accounts::kind.eq("card"),
                accounts::currency.eq(&cs.money.currency),
                accounts::min_balance.eq(Some(-limit)),
            ))
            .returning(accounts::id)
            .get_result(conn)?;
        let now = Utc::now();
        let (month, year) = (i32::try_from(now.month()).unwrap_or(1), now.year() + cs.cards.expiry_years);
        // Collisions are astronomically unlikely; the unique hash makes them harmless, and we retry.
        for _ in 0..5 {
            let number = pan::generate_for(&network.prefixes, network.pan_length);
            let inserted = conn.transaction::<_, diesel::result::Error, _>(|conn| {
                diesel::insert_into(cards::table)
                    .values((
                        cards::user_id.eq(owner),
                        cards::account_id.eq(account_id),
                        cards::card_type.eq(&body.card_type),
                        cards::brand.eq(&network.name),
                        cards::pan_hash.eq(pan::pan_hash(cs.cards.pan_key.expose(), &number)),
                        cards::pan_masked.eq(number.masked()),
                        cards::pan_last4.eq(number.last4()),
                        cards::expiry_month.eq(month),
                        cards::expiry_year.eq(year),
                        cards::credit_limit.eq(limit),
                        cards::label.eq(body.label.clone().unwrap_or_default()),
                    ))
                    .returning(Card::as_returning())
                    .get_result(conn)
            });
            match inserted {
                Ok(card) => {
                    insert_event(conn, &card_event("card.issued", &card))?;
                    let cvv = pan::cvv(cs.cards.cvv_key.expose(), &number, month, year, network.cvv_length);
                    return Ok((card, number, cvv));
                }
                Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CardsError::PanExhausted)
    })
    .await?;
    crate::metrics::count("card_issue", "success");
    tracing::info!(card_id = %card.id, card = %number, "card issued");
    let view = CardView::new(card, &state.settings.money.currency);
    Ok(IssuedCard { card: view, card_number: number.digits().to_owned(), cvv })
}

/// The caller's cards (admins: all, or one user's), newest first.
///
/// # Errors
/// 403 when a user asks for another user's cards, 422 bad filter or page.
pub async fn list(state: &AppState, user: &AuthUser, q: CardListQuery) -> Result<Page<CardView>, ApiError> {
    status_filter(&q)?;
    let page = q.page.resolve_with_total()?;
    let pattern = crate::http::pagination::search_opt(q.search.as_deref())?;
    let requested = match q.user_id.as_deref() {
        None => None,
        Some(u) => {
            Some(u.parse::<UserId>().map_err(|_| ApiError::validation("user_id", "user_id must be an integer"))?)
        }
    };
    let filter = if user.is_admin() {
        requested
    } else {
        if requested.is_some_and(|u| u != user.user_id) {
            return Err(CardsError::AdminOnly("list other users' cards").into());
        }
        Some(user.user_id)
    };
    let (rows, total) = storage::run(&state.db, move |conn| list_query(conn, filter, &q, pattern, page)).await?;
    let currency = state.settings.money.currency.clone();
    let views: Vec<CardView> = rows.into_iter().map(|c| CardView::new(c, &currency)).collect();
    Ok(Page::from_rows(views, page.0, |c| c.id).with_total(total))
}

/// A card of the caller (any card for an admin; another user's answers like a missing one).
///
/// # Errors
/// 404; a storage error.
pub async fn get(state: &AppState, user: &AuthUser, id: CardId) -> Result<CardView, ApiError> {
    let card = state.cards.get_for(&state.db, id, user).await?;
    Ok(CardView::new(card, &state.settings.money.currency))
}

/// Updates a card's label (holder or admin) and, for admins, a credit card's credit line.
///
/// The floor of the card's account (`-credit_limit`) is changed by one guarded UPDATE that applies
/// only while the balance is at or above the new floor; a debit committing at the same time either
/// commits first (then the guard sees its balance) or waits on the row and meets the new floor in
/// the `accounts_balance_floor` CHECK. The account actor then reloads its cached floor.
///
/// # Errors
/// 404 unknown or another user's card, 403 `credit_limit` from a non-admin, 422 `credit_limit` on a
/// debit card, 409 `credit_limit_below_balance` (naming `credit_limit`) or a closed card, a storage error.
pub async fn update(
    state: &AppState,
    user: &AuthUser,
    id: CardId,
    body: UpdateCardRequest,
) -> Result<CardView, ApiError> {
    if body.credit_limit.is_some() && !user.is_admin() {
        return Err(CardsError::AdminOnly("change a credit_limit").into());
    }
    let who = user.clone();
    let card = storage::transaction(&state.db, move |conn| {
        let card = crate::cards::find_for(conn, id, &who)?;
        let now = Utc::now();
        let mut limit = card.credit_limit;
        if let Some(new) = body.credit_limit.filter(|l| *l != card.credit_limit) {
            if card.card_type != "credit" {
                return Err(CardsError::NotCreditCard);
            }
            if card.status == "closed" {
                return Err(CardsError::InvalidTransition {
                    action: "change the credit_limit of",
                    current: card.status.to_string(),
                });
            }
            let floor = -new;
            let n = diesel::update(accounts::table.find(card.account_id))
                .filter(accounts::balance.ge(floor))
                .set((accounts::min_balance.eq(Some(floor)), accounts::updated_at.eq(now)))
                .execute(conn)?;
            if n == 0 {
                let (balance, _) = crate::cards::account_balance(conn, card.account_id)?;
                return Err(CardsError::CreditLimitBelowBalance { balance, limit: new });
            }
            limit = new;
        }
        let updated = diesel::update(cards::table.find(id))
            .set((
                cards::label.eq(body.label.unwrap_or(card.label)),
                cards::credit_limit.eq(limit),
                cards::updated_at.eq(now),
            ))
            .returning(Card::as_returning())
            .get_result(conn)?;
        if limit != card.credit_limit {
            let mut event = card_event("card.credit_limit_changed", &updated);
            if let Some(p) = event.payload.as_object_mut() {
                p.insert("credit_limit".into(), limit.into());
                p.insert("previous_credit_limit".into(), card.credit_limit.into());
            }
            insert_event(conn, &event)?;
        }
        Ok::<_, CardsError>(updated)
    })
    .await?;
    state.cards.changed(card.id);
    // The account actor caches the floor: reload it now (the database refuses a debit below the new
    // floor either way; this keeps the actor from approving what the database will refuse).
    if let Err(e) = state.ledger.ledger.accounts().resync(card.account_id.get()).await {
        tracing::warn!(account = %card.account_id, error = %e, "account resync after a credit_limit change failed");
    }
    Ok(CardView::new(card, &state.settings.money.currency))
}

/// Restores every archived card (admin); the cards keep their status (closed). Both transports
/// (`POST /api/v1/cards/restore-all`, `Cards.RestoreAllCards`).
///
/// # Errors
/// A storage error.
pub async fn restore_all(state: &AppState) -> Result<crate::http::RestoredAll, ApiError> {
    let restored = storage::transaction(&state.db, move |conn| {
        let cards: Vec<Card> = diesel::update(cards::table.filter(cards::archived_at.is_not_null()))
            .set((cards::archived_at.eq(None::<DateTime<Utc>>), cards::updated_at.eq(Utc::now())))
            .returning(Card::as_returning())
            .get_results(conn)?;
        for c in &cards {
            insert_event(conn, &card_event("card.restored", c))?;
        }
        Ok::<_, CardsError>(cards.into_iter().map(|c| c.id).collect::<Vec<CardId>>())
    })
    .await?;
    for id in &restored {
        state.cards.changed(*id);
    }
    Ok(crate::http::RestoredAll { restored: restored.len() })
}

/// A card by its number: the caller's own (any for an admin); someone else's is NOT_FOUND, so a
/// number's existence is not revealed. Both transports (`POST /api/v1/cards/lookup`,
/// `Cards.FindCardByNumber`).
///
/// # Errors
/// 422 naming `card_number` for no valid number; 404; a storage error.
pub async fn find_by_number(
    state: &AppState,
    user: &AuthUser,
    body: crate::cards::routes::LookupRequest,
) -> Result<CardView, ApiError> {
    let Some(number) = pan::Pan::parse(&body.card_number) else {
        return Err(ApiError::validation("card_number", "card_number is not a valid card number"));
    };
    let hash = pan::pan_hash(state.settings.cards.pan_key.expose(), &number);
    let by = user.user_id;
    let admin = user.is_admin();
    let card = storage::run(&state.db, move |conn| {
        let card: Card = cards::table.filter(cards::pan_hash.eq(hash)).select(Card::as_select()).first(conn)?;
        if card.user_id != by && !admin {
            // Do not reveal that someone else's number exists.
            return Err(CardsError::NotFound);
        }
        Ok(card)
    })
    .await?;
    Ok(CardView::new(card, &state.settings.money.currency))
}
