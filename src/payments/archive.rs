//! Archiving an operation (hidden from default lists) and restoring it, as one function both
//! transports call. Money records are never purged; archiving only hides them.

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::payments::{service, OperationView};
use crate::storage;

/// Archives (`archive`) or restores the operation `id` of `kind`.
///
/// # Errors
/// 404 unknown operation or another kind, 409 already archived / not archived, a storage error.
pub async fn set(
    state: &AppState,
    kind: &'static str,
    id: uuid::Uuid,
    archive: bool,
) -> Result<OperationView, ApiError> {
    let op = storage::run(&state.db, move |conn| {
        let op = service::find_op(conn, kind, id)?;
        service::set_archived(conn, &op, archive)
    })
    .await?;
    // Lists read before this change must not be served here any more (`payments::lists`).
    state.ledger.changed_here(&[op.entry.debit_account_id.get(), op.entry.credit_account_id.get()]);
    Ok(OperationView::from(op))
}
