//! Diesel definitions of the events tables (migration `2026-11-26-000004_events`). The outbox itself
//! is `storage::schema::outbox`; its lease columns are only touched by raw SQL in `outbox.rs`.

diesel::table! {
    processed_events (consumer, event_id) {
        consumer -> Text,
        event_id -> Uuid,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    email_jobs (id) {
        id -> Int8,
        dedupe_key -> Text,
        event_id -> Nullable<Uuid>,
        template -> Text,
        to_address -> Text,
        context -> Jsonb,
        sensitive -> Bool,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        lease_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    dead_letters (id) {
        id -> Int8,
        kind -> Text,
        consumer -> Text,
        reference -> Text,
        event_id -> Nullable<Uuid>,
        reason -> Text,
        payload -> Nullable<Text>,
        attempts -> Int4,
        created_at -> Timestamptz,
        redriven_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Int8,
        merchant_id -> Int8,
        url -> Text,
        description -> Text,
        event_types -> Array<Text>,
        secret -> Text,
        previous_secret -> Nullable<Text>,
        previous_expires_at -> Nullable<Timestamptz>,
        status -> Text,
        disabled_reason -> Nullable<Text>,
        consecutive_failures -> Int4,
        created_by -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Int8,
        endpoint_id -> Int8,
        event_id -> Uuid,
        event_type -> Text,
        body -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        window_start -> Timestamptz,
        lease_until -> Nullable<Timestamptz>,
        manual -> Bool,
        last_status -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Int8,
        delivery_id -> Int8,
        attempt -> Int4,
        status_code -> Nullable<Int4>,
        error -> Nullable<Text>,
        duration_ms -> Int8,
        manual -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::allow_tables_to_appear_in_same_query!(webhook_endpoints, webhook_deliveries, webhook_attempts);
