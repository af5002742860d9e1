//! Cards as plain functions both transports call: issue, read, list. Inputs are the validated
//! request types of `cards::routes` and the caller's identity.

use chrono::{DateTime, Datelike, Utc};
use diesel::prelude::*;

use crate::app::AppState;
use crate::cards::pan;
use crate::cards::routes::{
    card_event, check_status_filter, insert_event, list_query, CardListQuery, IssueCardRequest, IssuedCard,
};
use crate::cards::{Card, CardView, CardsError};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::http::pagination::Page;
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
    let Some(brand) = pan::brand(&body.brand) else { return Err(ApiError::validation("brand", "unknown brand")) };
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
            let number = pan::generate(brand);
            let inserted = conn.transaction::<_, diesel::result::Error, _>(|conn| {
                diesel::insert_into(cards::table)
                    .values((
                        cards::user_id.eq(owner),
                        cards::account_id.eq(account_id),
                        cards::card_type.eq(&body.card_type),
                        cards::brand.eq(brand.0),
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
                    let cvv = pan::cvv(cs.cards.cvv_key.expose(), &number, month, year, brand.3);
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
    tracing::info!(card_id = card.id, card = %number, "card issued");
    let view = CardView::new(card, &state.settings.money.currency);
    Ok(IssuedCard { card: view, card_number: number.digits().to_owned(), cvv })
}

/// The caller's cards (admins: all, or one user's), newest first.
///
/// # Errors
/// 403 when a user asks for another user's cards, 422 bad filter or page.
pub async fn list(state: &AppState, user: &AuthUser, q: CardListQuery) -> Result<Page<CardView>, ApiError> {
    check_status_filter(&q)?;
    let (limit, cursor) = q.page.resolve()?;
    let requested = match q.user_id.as_deref() {
        None => None,
        Some(u) => Some(u.parse::<i64>().map_err(|_| ApiError::validation("user_id", "user_id must be an integer"))?),
    };
    let filter = if user.is_admin() {
        requested
    } else {
        if requested.is_some_and(|u| u != user.user_id) {
            return Err(CardsError::AdminOnly("list other users' cards").into());
        }
        Some(user.user_id)
    };
    let rows = storage::run(&state.db, move |conn| list_query(conn, filter, &q, limit, cursor)).await?;
    let currency = state.settings.money.currency.clone();
    let views: Vec<CardView> = rows.into_iter().map(|c| CardView::new(c, &currency)).collect();
    Ok(Page::from_rows(views, limit, |c| c.id))
}

/// A card of the caller (any card for an admin; another user's answers like a missing one).
///
/// # Errors
/// 404; a storage error.
pub async fn get(state: &AppState, user: &AuthUser, id: i64) -> Result<CardView, ApiError> {
    let card = state.cards.get_for(&state.db, id, user).await?;
    Ok(CardView::new(card, &state.settings.money.currency))
}
