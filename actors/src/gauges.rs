//! Process-wide actor gauges, read by the service's metrics: outstanding reservations and account
//! and card asks waiting on a mailbox (the closest observable measure of mailbox depth).

use std::sync::atomic::{AtomicI64, Ordering};

/// Reservations held by account actors, not yet released.
pub static RESERVATIONS: AtomicI64 = AtomicI64::new(0);
/// Account- and card-actor asks sent and not yet answered (queued in or being handled by a mailbox).
pub static ASKS_IN_FLIGHT: AtomicI64 = AtomicI64::new(0);

/// Account and card actors restarted after a panic in a handler.
pub static ACTOR_RESTARTS: AtomicI64 = AtomicI64::new(0);

pub(crate) fn forget_reservations(n: usize) {
    RESERVATIONS.fetch_sub(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
}

/// (outstanding reservations, actor asks in flight).
pub fn snapshot() -> (i64, i64) {
    (RESERVATIONS.load(Ordering::Relaxed), ASKS_IN_FLIGHT.load(Ordering::Relaxed))
}
