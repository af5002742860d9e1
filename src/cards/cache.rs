//! Card rows cached in process (`GET /cards/{id}`, the card behind a statement), invalidated by the
//! database: a trigger on `cards` notifies channel `cards_changed` with the card's id when an update
//! or delete commits, and the cache's listener drops that card (`storage::notified`).
//!
//! The bound is `ledger.read_staleness_ms`: a card read on any instance reflects every change
//! committed — through any instance — at least that long before the read; a change made through this
//! instance is seen at once (the writer drops the card here before answering).

use std::time::Duration;

use crate::cards::{find, Card, CardsError};
use crate::http::auth::AuthUser;
use crate::ids::CardId;
use crate::storage::notified::{Listeners, Notified};
use crate::storage::{self, PgPool};

const CHANNEL: &str = "cards_changed";
/// Cards kept per instance at most.
const CAPACITY: usize = 200_000;

/// The card cache of one instance.
#[derive(Clone, Debug)]
pub struct Cards {
    cache: Notified<CardId, Card>,
}

impl Cards {
    /// A cache kept by the instance's listener.
    pub fn start(listeners: &Listeners, bound: Duration) -> Self {
        Self { cache: Notified::start(listeners, CHANNEL, bound, CAPACITY) }
    }

    /// The card `id`: from the cache when it is current, else from the database (then cached).
    ///
    /// # Errors
    /// `NotFound` or a storage error.
    pub async fn get(&self, db: &PgPool, id: CardId) -> Result<Card, CardsError> {
        if let Some(card) = self.cache.get(&id) {
            return Ok(card);
        }
        let generation = self.cache.generation();
        let card = storage::run(db, move |conn| find(conn, id)).await?;
        self.cache.put(generation, id, card.clone());
        Ok(card)
    }

    /// The card, if the caller owns it or is an admin; someone else's card is `NotFound`, exactly like
    /// a missing one (as `cards::find_for`).
    ///
    /// # Errors
    /// As [`Cards::get`].
    pub async fn get_for(&self, db: &PgPool, id: CardId, user: &AuthUser) -> Result<Card, CardsError> {
        let card = self.get(db, id).await?;
        if card.user_id != user.user_id && !user.is_admin() {
            return Err(CardsError::NotFound);
        }
        Ok(card)
    }

    /// Drops card `id` from this instance's cache at once: call after committing a change to it.
    pub fn changed(&self, id: CardId) {
        self.cache.invalidate(&id);
    }
}
