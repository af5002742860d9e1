//! Per-caller rate limits on the money routes: money requests per user (top-ups, withdrawals,
//! transfers, reversals, admin refunds), per merchant API key (payments, refunds) and recipient
//! previews per user, in fixed
//! one-minute windows in Redis. Past the limit: 429 `rate_limited` with `Retry-After`. Configured by
//! `[rate_limits]`; `enabled = false` turns them off (load tests).

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::ids::{ApiKeyId, UserId};

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    User(UserId),
    ApiKey(ApiKeyId),
}

/// Counts one money request of `caller`; refuses it past the configured rate.
///
/// # Errors
/// 429 `rate_limited` (with `Retry-After`) past the limit; 503 when Redis is unavailable.
pub async fn check(state: &AppState, caller: Caller) -> Result<(), ApiError> {
    let cfg = &state.settings.rate_limits;
    if !cfg.enabled {
        return Ok(());
    }
    let (key, limit) = match caller {
        Caller::User(id) => (format!("rl:money:user:{id}"), cfg.user_money_per_minute),
        Caller::ApiKey(id) => (format!("rl:money:key:{id}"), cfg.key_money_per_minute),
    };
    let (count, retry) = state.cache.hit(&key, 60).await.map_err(|e| {
        tracing::warn!(error = %e, "redis unavailable");
        ApiError::unavailable("rate-limit store unavailable, retry later")
    })?;
    if count > u64::from(limit) {
        crate::metrics::count("rate_limit", "money");
        return Err(ApiError::too_many(
            "rate_limited",
            format!("too many money requests: at most {limit} a minute; retry in {retry} seconds"),
            retry,
        ));
    }
    Ok(())
}

/// Counts one recipient lookup of `user` — a preview or a transfer by card number —
/// (`rate_limits.recipient_previews_per_minute`): either tells whether a number belongs to an open
/// card, so they share one budget, apart from the money requests' limit.
///
/// # Errors
/// 429 `rate_limited` (with `Retry-After`) past the limit; 503 when Redis is unavailable.
pub async fn check_recipient_preview(state: &AppState, user: UserId) -> Result<(), ApiError> {
    let cfg = &state.settings.rate_limits;
    if !cfg.enabled {
        return Ok(());
    }
    let limit = cfg.recipient_previews_per_minute;
    let (count, retry) = state.cache.hit(&format!("rl:preview:user:{user}"), 60).await.map_err(|e| {
        tracing::warn!(error = %e, "redis unavailable");
        ApiError::unavailable("rate-limit store unavailable, retry later")
    })?;
    if count > u64::from(limit) {
        crate::metrics::count("rate_limit", "recipient_preview");
        return Err(ApiError::too_many(
            "rate_limited",
            format!("too many recipient lookups (previews and transfers by card number): at most {limit} a minute; retry in {retry} seconds"),
            retry,
        ));
    }
    Ok(())
}
