//! The sharding plumbing under `crate::registry`: shard selection and the per-shard live-actor map.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, Addr};
use parking_lot::RwLock;

/// A live actor as the registry knows it. `generation` distinguishes successive actors of
/// the same id so stale `Forget`s and retired actors can be recognised.
pub(crate) struct Entry<A: Actor> {
    pub(crate) addr: Addr<A>,
    pub(crate) generation: u64,
}

impl<A: Actor> Clone for Entry<A> {
    fn clone(&self) -> Self {
        Self { addr: self.addr.clone(), generation: self.generation }
    }
}

/// Per-shard map of live actors; written only by the shard's registry actor.
pub(crate) type LiveMap<A> = Arc<RwLock<HashMap<i64, Entry<A>>>>;

/// Shard index for an id (`id mod shards`, non-negative).
pub(crate) fn shard_index(id: i64, shards: usize) -> usize {
    let n = i64::try_from(shards.max(1)).unwrap_or(i64::MAX);
    usize::try_from(id.rem_euclid(n)).unwrap_or(0)
}

/// The live, connected entry for `id`, if any.
pub(crate) fn live_entry<A: Actor>(map: &LiveMap<A>, id: i64) -> Option<Entry<A>> {
    let guard = map.read();
    guard.get(&id).filter(|e| e.addr.connected()).cloned()
}

/// Whether `generation` is still the registered actor for `id`.
pub(crate) fn is_current<A: Actor>(map: &LiveMap<A>, id: i64, generation: u64) -> bool {
    map.read().get(&id).is_some_and(|e| e.generation == generation)
}

/// Number of connected actors in the map.
pub(crate) fn live_count<A: Actor>(map: &LiveMap<A>) -> usize {
    map.read().values().filter(|e| e.addr.connected()).count()
}

#[cfg(test)]
mod tests {
    use super::shard_index;

    #[test]
    fn shard_index_is_non_negative_mod() {
        assert_eq!(shard_index(7, 4), 3);
        assert_eq!(shard_index(-1, 4), 3);
        assert_eq!(shard_index(5, 0), 0);
    }
}
