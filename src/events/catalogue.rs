//! The event catalogue: every event type payd emits, its aggregate, schema version, and whether
//! merchants may subscribe to it with a webhook. `docs/events.md` documents the payloads; a unit test
//! keeps the two in step.

/// One event type.
#[derive(Debug, Clone, Copy)]
pub struct EventSpec {
    pub event_type: &'static str,
    /// What the aggregate key names (`user:<id>`, `card:<id>`, `merchant:<id>`).
    pub aggregate: &'static str,
    pub schema_version: i32,
    /// Merchants may subscribe webhook endpoints to it.
    pub webhook: bool,
}

const fn spec(event_type: &'static str, aggregate: &'static str, webhook: bool) -> EventSpec {
    EventSpec { event_type, aggregate, schema_version: 1, webhook }
}

/// Every event type, grouped by family (the part before the first dot).
pub const CATALOGUE: &[EventSpec] = &[
    spec("user.registered", "user", false),
    spec("user.created", "user", false),
    spec("user.verified", "user", false),
    spec("password.reset_requested", "user", false),
    spec("password.changed", "user", false),
    spec("card.issued", "card", false),
    spec("card.frozen", "card", false),
    spec("card.unfrozen", "card", false),
    spec("card.closed", "card", false),
    spec("card.archived", "card", false),
    spec("card.restored", "card", false),
    spec("card.credit_limit_changed", "card", false),
    spec("topup.completed", "card", false),
    spec("topup.failed", "card", false),
    spec("withdrawal.completed", "card", false),
    spec("withdrawal.failed", "card", false),
    spec("transfer.completed", "card", false),
    spec("transfer.failed", "card", false),
    spec("reversal.completed", "card", false),
    spec("reversal.failed", "card", false),
    spec("payment.completed", "card", true),
    spec("payment.failed", "card", true),
    spec("refund.completed", "card", true),
    spec("refund.failed", "card", true),
    spec("merchant.applied", "merchant", true),
    spec("merchant.status_changed", "merchant", true),
    spec("document.submitted", "merchant", true),
    spec("document.replaced", "merchant", true),
    spec("document.withdrawn", "merchant", true),
    spec("document.reviewed", "merchant", true),
    spec("api_key.created", "merchant", true),
    spec("api_key.revoked", "merchant", true),
    spec("webhook_endpoint.disabled", "merchant", false),
];

/// Family used for events of a type missing from the catalogue (still published, never dropped).
pub const OTHER_FAMILY: &str = "other";

/// The aggregate types. Kafka has one topic per aggregate type: all events of one aggregate key share
/// a topic and (by key) a partition, which is what keeps them in order — Kafka orders nothing across
/// topics, so a topic per type family (`payment`, `card`, …) would let a card's `topup.completed`
/// overtake its `card.issued`.
pub const AGGREGATES: &[&str] = &["user", "card", "merchant"];

/// The stream (Kafka topic suffix) of an aggregate type; unknown types go to `other`.
pub fn stream(aggregate_type: &str) -> &'static str {
    AGGREGATES.iter().find(|a| **a == aggregate_type).copied().unwrap_or(OTHER_FAMILY)
}

/// Every stream: the aggregate types plus `other`.
pub fn streams() -> Vec<&'static str> {
    let mut out = AGGREGATES.to_vec();
    out.push(OTHER_FAMILY);
    out
}

/// The spec of a known event type.
pub fn find(event_type: &str) -> Option<&'static EventSpec> {
    CATALOGUE.iter().find(|s| s.event_type == event_type)
}

/// The family of an event type: `payment.completed` → `payment`; unknown families → `other`.
pub fn family(event_type: &str) -> &'static str {
    let prefix = event_type.split('.').next().unwrap_or_default();
    families().into_iter().find(|f| *f == prefix).unwrap_or(OTHER_FAMILY)
}

/// Every family of the catalogue, in catalogue order, plus `other`.
pub fn families() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for s in CATALOGUE {
        let f = s.event_type.split('.').next().unwrap_or(s.event_type);
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out.push(OTHER_FAMILY);
    out
}

/// The event types a webhook endpoint may subscribe to (`*` subscribes to all of them).
pub fn webhook_types() -> Vec<&'static str> {
    CATALOGUE.iter().filter(|s| s.webhook).map(|s| s.event_type).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn families_and_lookup() {
        assert_eq!(family("payment.completed"), "payment");
        assert_eq!(family("api_key.created"), "api_key");
        assert_eq!(family("nonsense.happened"), OTHER_FAMILY);
        assert!(families().contains(&"webhook_endpoint"));
        assert_eq!(stream("card"), "card");
        assert_eq!(stream("account"), OTHER_FAMILY);
        assert!(CATALOGUE.iter().all(|s| AGGREGATES.contains(&s.aggregate)));
        assert!(webhook_types().contains(&"refund.failed"));
        assert!(!webhook_types().contains(&"user.registered"));
    }

    #[test]
    fn every_type_is_unique_and_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.md")).unwrap();
        for (i, s) in CATALOGUE.iter().enumerate() {
            assert!(CATALOGUE[..i].iter().all(|o| o.event_type != s.event_type), "{} listed twice", s.event_type);
            assert!(doc.contains(&format!("`{}`", s.event_type)), "docs/events.md does not document {}", s.event_type);
        }
    }
}
