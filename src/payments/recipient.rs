//! Paying a person by card number: resolving a recipient's number (normalised, Luhn-checked, looked
//! up by its keyed hash, never stored or logged in clear), the recipient preview shown before paying,
//! and how another user's card appears in the operation views a caller sees (masked, never its id).
//!
//! Unknown and closed recipients answer alike (404 `recipient_not_found`), so neither the preview nor
//! a transfer tells which numbers exist beyond what the preview, rate-limited per user, shows by design.

use std::collections::HashMap;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

use crate::app::AppState;
use crate::cards::pan::{self, Pan};
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::ids::{CardId, UserId};
use crate::payments::{limits, Operation, OperationView, PaymentError};
use crate::storage::schema::{cards, users};
use crate::storage::{self, StorageError};

/// `POST /api/v1/transfers/recipient-preview`: the number in the body (never in a URL, so it never
/// lands in access logs).
#[derive(Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"card_number": "4111 1111 1111 1111"}))]
pub struct RecipientPreviewRequest {
    /// The recipient's card number; spaces and dashes are ignored.
    #[validate(length(min = 12, max = 30, message = "card_number must be 12-19 digits (spaces and dashes allowed)"))]
    #[schema(min_length = 12, max_length = 30, pattern = "^[0-9 -]{12,30}$", example = "4111 1111 1111 1111")]
    pub card_number: String,
}

/// Who a card number belongs to, as far as a sender may know before paying.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecipientPreview {
    /// The number masked but for its last four digits, e.g. `**** **** **** 1234`.
    pub card_number: String,
    /// The holder's name as they chose to show it to payers (`PUT /api/v1/auth/me/display-name`); by
    /// default their first name and the initial of their last name.
    pub display_name: String,
}

/// A resolved recipient card (internal: its id never leaves the server for another user's card).
#[derive(Debug, Clone)]
pub struct Recipient {
    pub card_id: CardId,
    pub user_id: UserId,
    pub masked: String,
    pub display_name: String,
}

/// `**** **** **** 1234`: the only form in which another user's card is shown.
pub fn mask_last4(last4: &str) -> String {
    format!("**** **** **** {}", last4.trim())
}

/// The default name payers see, until the holder chooses one: first name and the initial of the last
/// name ("Budi S.").
pub fn display_name(first: &str, last: &str) -> String {
    match last.trim().chars().next() {
        Some(c) => format!("{} {}.", first.trim(), c.to_uppercase()),
        None => first.trim().to_owned(),
    }
}

/// Parses a recipient number (spaces and dashes ignored, Luhn checked).
///
/// # Errors
/// 422 naming `field`.
pub fn parse(field: &'static str, raw: &str) -> Result<Pan, ApiError> {
    Pan::parse(raw).ok_or_else(|| ApiError::validation(field, format!("{field} is not a valid card number")))
}

/// The keyed hash under which a number is stored (what idempotency fingerprints carry instead of digits).
pub fn fingerprint(state: &AppState, number: &Pan) -> String {
    pan::pan_hash(state.settings.cards.pan_key.expose(), number)
}

/// The open card (active or frozen, not archived, holder not archived) with this number.
///
/// # Errors
/// `RecipientNotFound` for unknown and closed cards alike; a storage error.
pub async fn resolve(state: &AppState, field: &'static str, number: &Pan) -> Result<Recipient, PaymentError> {
    let hash = fingerprint(state, number);
    // One row by the unique index on `cards.pan_hash`.
    let row: Option<(CardId, UserId, String, String, String, Option<String>)> = storage::run(&state.db, move |conn| {
        cards::table
            .inner_join(users::table)
            .filter(cards::pan_hash.eq(hash))
            .filter(cards::status.ne(crate::cards::CardStatus::Closed))
            .filter(cards::archived_at.is_null())
            .filter(users::archived_at.is_null())
            .select((
                cards::id,
                cards::user_id,
                cards::pan_last4,
                users::first_name,
                users::last_name,
                users::display_name,
            ))
            .first(conn)
            .optional()
            .map_err(StorageError::from)
    })
    .await?;
    let (card_id, user_id, last4, first, last, chosen) = row.ok_or(PaymentError::RecipientNotFound(field))?;
    let display_name = chosen.unwrap_or_else(|| display_name(&first, &last));
    Ok(Recipient { card_id, user_id, masked: mask_last4(&last4), display_name })
}

/// The recipient preview for the caller (rate-limited per user).
///
/// # Errors
/// 422 naming `card_number`, 404 `recipient_not_found` (unknown and closed alike), 429 past the limit.
pub async fn preview(
    state: &AppState,
    user: &AuthUser,
    body: RecipientPreviewRequest,
) -> Result<RecipientPreview, ApiError> {
    limits::check_recipient_preview(state, user.user_id).await?;
    let number = parse("card_number", &body.card_number)?;
    let r = resolve(state, "card_number", &number).await?;
    Ok(RecipientPreview { card_number: r.masked, display_name: r.display_name })
}

/// Operations as `user` may see them: cards of other users appear masked (`*_card_masked`), never by
/// id; admins see ids. One query by primary key for the cards of the whole page.
///
/// # Errors
/// A storage error.
pub fn present(
    conn: &mut PgConnection,
    user: &AuthUser,
    ops: Vec<Operation>,
) -> Result<Vec<OperationView>, StorageError> {
    if user.is_admin() {
        return Ok(ops.into_iter().map(OperationView::from).collect());
    }
    let ids = card_ids(&ops);
    let others: HashMap<CardId, String> = cards::table
        .filter(cards::id.eq_any(&ids))
        .filter(cards::user_id.ne(user.user_id))
        .select((cards::id, cards::pan_last4))
        .load::<(CardId, String)>(conn)?
        .into_iter()
        .map(|(id, last4)| (id, mask_last4(&last4)))
        .collect();
    Ok(mask(ops, &others))
}

/// [`present`] with the other users' cards from the instance's card cache (`cards::cache`, the same
/// bound as the rows it presents) instead of a query.
///
/// # Errors
/// A storage error reading a card the cache does not hold.
pub async fn present_cached(
    state: &AppState,
    user: &AuthUser,
    ops: Vec<Operation>,
) -> Result<Vec<OperationView>, ApiError> {
    if user.is_admin() {
        return Ok(ops.into_iter().map(OperationView::from).collect());
    }
    let mut others = HashMap::new();
    for id in card_ids(&ops) {
        match state.cards.get(&state.db, id).await {
            Ok(card) if card.user_id != user.user_id => {
                others.insert(id, mask_last4(&card.pan_last4));
            }
            Ok(_) | Err(crate::cards::CardsError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(mask(ops, &others))
}

/// The cards on either side of `ops`, each once.
fn card_ids(ops: &[Operation]) -> Vec<CardId> {
    let mut ids: Vec<CardId> = ops.iter().flat_map(|o| [o.source_card_id, o.dest_card_id]).flatten().collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The views of `ops`, with the cards in `others` (another user's) shown masked instead of by id.
fn mask(ops: Vec<Operation>, others: &HashMap<CardId, String>) -> Vec<OperationView> {
    ops.into_iter()
        .map(|o| {
            let mut v = OperationView::from(o);
            if let Some(m) = v.source_card_id.and_then(|id| others.get(&id)) {
                v.source_card_masked = Some(m.clone());
                v.source_card_id = None;
            }
            if let Some(m) = v.dest_card_id.and_then(|id| others.get(&id)) {
                v.dest_card_masked = Some(m.clone());
                v.dest_card_id = None;
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_masks() {
        assert_eq!(display_name("Budi", "santoso"), "Budi S.");
        assert_eq!(display_name(" Ani ", ""), "Ani");
        assert_eq!(mask_last4("1234"), "**** **** **** 1234");
    }
}
