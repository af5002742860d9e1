//! In-flight idempotency on one instance: while a money request runs, a second request with the same
//! key waits for the first one's answer and returns it (same status, same body) instead of racing it
//! into the ledger. A different request under a running key waits for the running one to end and
//! then lets the database decide (it answers 409 when the key's stored request differs): the running
//! request is not necessarily the key's owner — an earlier request may already have committed under
//! the key, and a retry of that one must replay it, not be refused. Across instances the database
//! decides too: the idempotency row is inserted with `ON CONFLICT DO NOTHING`, and the loser replays
//! the winner's stored answer.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::http::error::ApiError;

/// The answer a request produced, shared with the requests that waited for it.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Status, body, and whether the body is a stored answer replayed rather than produced now.
    Json(StatusCode, serde_json::Value, bool),
    Error(ApiError),
}

type Key = (String, String);

struct Slot {
    request_hash: String,
    answer: watch::Receiver<Option<Answer>>,
}

/// The keys being executed by this instance right now.
#[derive(Clone, Default)]
pub struct InFlight {
    slots: Arc<Mutex<HashMap<Key, Slot>>>,
}

/// What a request gets when it announces its key.
pub enum Claim {
    /// No request with this key runs here: execute, then [`Leader::finish`].
    Leader(Leader),
    /// The same request runs here: wait for its answer.
    Follower(watch::Receiver<Option<Answer>>),
    /// Another request runs under this key: wait for it to end, then claim again.
    Wait(watch::Receiver<Option<Answer>>),
}

/// The running request of a key. Dropping it without an answer (the request was cancelled) lets
/// the waiting requests go on by themselves: the database decides between them.
pub struct Leader {
    slots: Arc<Mutex<HashMap<Key, Slot>>>,
    key: Key,
    tx: Option<watch::Sender<Option<Answer>>>,
}

impl Leader {
    /// Publishes the answer to every waiting request and releases the key.
    pub fn finish(mut self, answer: &Answer) {
        self.slots.lock().remove(&self.key);
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(answer.clone()));
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.slots.lock().remove(&self.key);
        }
    }
}

impl InFlight {
    /// Announces a request for `(scope, key)` with fingerprint `request_hash`.
    pub fn claim(&self, scope: &str, key: &str, request_hash: &str) -> Claim {
        let mut slots = self.slots.lock();
        let k = (scope.to_owned(), key.to_owned());
        if let Some(slot) = slots.get(&k) {
            return if slot.request_hash == request_hash {
                Claim::Follower(slot.answer.clone())
            } else {
                Claim::Wait(slot.answer.clone())
            };
        }
        let (tx, rx) = watch::channel(None);
        slots.insert(k.clone(), Slot { request_hash: request_hash.to_owned(), answer: rx });
        Claim::Leader(Leader { slots: Arc::clone(&self.slots), key: k, tx: Some(tx) })
    }

    /// Keys in flight (a gauge).
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// Whether no key is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Waits for the leader's answer; `None` when the leader went away without one.
pub async fn wait(mut rx: watch::Receiver<Option<Answer>>) -> Option<Answer> {
    loop {
        if let Some(a) = rx.borrow_and_update().clone() {
            return Some(a);
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_answer_and_other_bodies_wait() {
        let f = InFlight::default();
        let Claim::Leader(leader) = f.claim("u:1", "k", "h1") else { unreachable!("first claim leads") };
        let Claim::Follower(rx) = f.claim("u:1", "k", "h1") else { unreachable!("same request follows") };
        let Claim::Wait(other) = f.claim("u:1", "k", "h2") else { unreachable!("another body waits") };
        assert!(matches!(f.claim("u:2", "k", "h1"), Claim::Leader(_)), "keys are per scope");
        let waiter = tokio::spawn(wait(rx));
        let other = tokio::spawn(wait(other));
        leader.finish(&Answer::Json(StatusCode::CREATED, serde_json::json!({"id": 1}), false));
        match waiter.await.ok().flatten() {
            Some(Answer::Json(s, b, _)) => assert_eq!((s, b), (StatusCode::CREATED, serde_json::json!({"id": 1}))),
            _ => unreachable!("the follower sees the answer"),
        }
        assert!(other.await.ok().flatten().is_some(), "the other body is released when the leader ends");
        assert!(f.is_empty());
        assert!(matches!(f.claim("u:1", "k", "h2"), Claim::Leader(_)), "then it may claim the key");
    }

    #[tokio::test]
    async fn a_cancelled_leader_releases_its_followers() {
        let f = InFlight::default();
        let Claim::Leader(leader) = f.claim("s", "k", "h") else { unreachable!("first claim leads") };
        let Claim::Follower(rx) = f.claim("s", "k", "h") else { unreachable!("same request follows") };
        drop(leader);
        assert!(wait(rx).await.is_none());
        assert!(matches!(f.claim("s", "k", "h"), Claim::Leader(_)));
    }
}
