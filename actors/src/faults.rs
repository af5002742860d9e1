//! Fault injection for the supervision tests: with the `fault-injection` feature (enabled for this
//! workspace's tests only) a test can make the next `Reserve` of one account, or the next batch of a
//! ledger writer, panic. Without the feature every hook is an empty inline function.

#[cfg(feature = "fault-injection")]
mod enabled {
    use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

    static ACCOUNT_PANIC: AtomicI64 = AtomicI64::new(0);
    static WRITER_PANICS: AtomicU32 = AtomicU32::new(0);

    /// The next `Reserve` handled by the actor of `account` panics (once).
    pub fn panic_next_reserve(account: i64) {
        ACCOUNT_PANIC.store(account, Ordering::SeqCst);
    }

    /// The next `n` batches taken by any ledger writer thread panic before committing.
    pub fn panic_next_writer_batches(n: u32) {
        WRITER_PANICS.store(n, Ordering::SeqCst);
    }

    #[allow(clippy::panic)]
    pub(crate) fn reserve(account: i64) {
        if account != 0 && ACCOUNT_PANIC.compare_exchange(account, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            panic!("injected fault: account actor {account} panics in Reserve");
        }
    }

    #[allow(clippy::panic)]
    pub(crate) fn writer_batch() {
        let taken = WRITER_PANICS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if taken {
            panic!("injected fault: ledger writer panics before a commit");
        }
    }
}

#[cfg(feature = "fault-injection")]
pub use enabled::{panic_next_reserve, panic_next_writer_batches};
#[cfg(feature = "fault-injection")]
pub(crate) use enabled::{reserve, writer_batch};

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn reserve(_account: i64) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn writer_batch() {}
