//! Merchants as plain functions both transports call: applying, reading, and the API keys.
//! Inputs are the validated request types of `merchants::routes` and the caller's identity.

use chrono::Utc;
use diesel::prelude::*;

use crate::app::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::ids::{ApiKeyId, MerchantId};
use crate::merchants::routes::{
    emit, insert_key, merchant_event, owned_active, ApplyRequest, CreatedKey, KeyRequest, KeyView,
};
use crate::merchants::{find_for, Merchant, MerchantError};
use crate::storage;
use crate::storage::schema::{accounts, merchant_api_keys, merchants};

/// A merchant application by the caller (status `pending` until an admin decides).
///
/// # Errors
/// A storage error.
pub async fn apply(state: &AppState, user: AuthUser, b: ApplyRequest) -> Result<Merchant, ApiError> {
    let currency = state.settings.money.currency.clone();
    let m = storage::transaction(&state.db, move |conn| {
        let account: i64 = diesel::insert_into(accounts::table)
            .values((
                accounts::kind.eq("merchant"),
                accounts::currency.eq(&currency),
                accounts::min_balance.eq(Some(0i64)),
            ))
            .returning(accounts::id)
            .get_result(conn)?;
        let m: Merchant = diesel::insert_into(merchants::table)
            .values((
                merchants::owner_id.eq(user.user_id),
                merchants::account_id.eq(account),
                merchants::business_name.eq(b.business_name.trim()),
                merchants::contact_email.eq(b.contact_email.trim().to_lowercase()),
                merchants::category.eq(b.category.trim()),
                merchants::website.eq(b.website.unwrap_or_default()),
                merchants::description.eq(b.description.unwrap_or_default()),
            ))
            .returning(Merchant::as_returning())
            .get_result(conn)?;
        emit(conn, merchant_event("merchant.applied", &m, serde_json::Value::Null))?;
        Ok::<_, MerchantError>(m)
    })
    .await?;
    crate::metrics::count("merchant_apply", "success");
    Ok(m)
}

/// A merchant of the caller (any for an admin; another owner's answers like a missing one).
///
/// # Errors
/// 404; a storage error.
pub async fn get(state: &AppState, user: AuthUser, id: MerchantId) -> Result<Merchant, ApiError> {
    let m = storage::run(&state.db, move |conn| find_for(conn, id, &user)).await?;
    Ok(m)
}

/// A new API key of the caller's active merchant; the full key is in the answer only.
///
/// # Errors
/// 404 not the caller's merchant, 409 not active; a storage error.
pub async fn create_key(
    state: &AppState,
    user: AuthUser,
    id: MerchantId,
    body: KeyRequest,
) -> Result<CreatedKey, ApiError> {
    let label = body.label.unwrap_or_default();
    let st = state.clone();
    let created = storage::transaction(&state.db, move |conn| {
        let m = owned_active(conn, id, &user)?;
        insert_key(conn, &st, &m, &label, user.user_id)
    })
    .await?;
    Ok(created)
}

/// The API keys of a merchant (its owner or an admin), oldest first.
///
/// # Errors
/// 404; a storage error.
pub async fn list_keys(state: &AppState, user: AuthUser, id: MerchantId) -> Result<Vec<KeyView>, ApiError> {
    let keys = storage::run(&state.db, move |conn| {
        find_for(conn, id, &user)?;
        Ok::<_, MerchantError>(
            merchant_api_keys::table
                .filter(merchant_api_keys::merchant_id.eq(id))
                .select(KeyView::as_select())
                .order(merchant_api_keys::id.asc())
                .load(conn)?,
        )
    })
    .await?;
    Ok(keys)
}

/// Revokes an API key of a merchant (its owner or an admin): refused from the next call on.
///
/// # Errors
/// 404 unknown merchant or key (or already revoked); a storage error.
pub async fn revoke_key(state: &AppState, user: AuthUser, id: MerchantId, key: ApiKeyId) -> Result<KeyView, ApiError> {
    let view = storage::transaction(&state.db, move |conn| {
        let m = find_for(conn, id, &user)?;
        let view: KeyView = diesel::update(
            merchant_api_keys::table
                .filter(merchant_api_keys::id.eq(key))
                .filter(merchant_api_keys::merchant_id.eq(id))
                .filter(merchant_api_keys::revoked_at.is_null()),
        )
        .set(merchant_api_keys::revoked_at.eq(Utc::now()))
        .returning(KeyView::as_returning())
        .get_result(conn)
        .optional()?
        .ok_or(MerchantError::KeyNotFound)?;
        emit(
            conn,
            merchant_event("api_key.revoked", &m, serde_json::json!({"api_key_id": view.id, "key_id": view.key_id})),
        )?;
        Ok::<_, MerchantError>(view)
    })
    .await?;
    state.api_keys.invalidate(&view.key_id);
    Ok(view)
}
