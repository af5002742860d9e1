//! Diesel table definitions, kept in step with `migrations/` by hand (checked by the migration tests).

diesel::table! {
    roles (id) {
        id -> Int8,
        name -> Text,
        description -> Text,
        builtin -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        archived_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        first_name -> Text,
        last_name -> Text,
        email -> Text,
        password_hash -> Text,
        email_verified_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        archived_at -> Nullable<Timestamptz>,
        display_name -> Nullable<Text>,
    }
}

diesel::table! {
    user_roles (user_id, role_id) {
        user_id -> Int8,
        role_id -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    email_verifications (id) {
        id -> Int8,
        user_id -> Int8,
        code_hash -> Text,
        attempts -> Int4,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    password_resets (id) {
        id -> Int8,
        user_id -> Int8,
        token_hash -> Text,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Int8,
        user_id -> Int8,
        family_id -> Uuid,
        token_hash -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    mailbox (id) {
        id -> Int8,
        to_address -> Text,
        subject -> Text,
        text_body -> Text,
        html_body -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    accounts (id) {
        id -> Int8,
        kind -> Text,
        code -> Nullable<Text>,
        currency -> Bpchar,
        balance -> Int8,
        min_balance -> Nullable<Int8>,
        status -> Text,
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        total_withdrawn -> Int8,
        last_withdrawal_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    cards (id) {
        id -> Int8,
        user_id -> Int8,
        account_id -> Int8,
        card_type -> Text,
        brand -> Text,
        pan_hash -> Text,
        pan_masked -> Text,
        pan_last4 -> Bpchar,
        expiry_month -> Int4,
        expiry_year -> Int4,
        credit_limit -> Int8,
        label -> Text,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        archived_at -> Nullable<Timestamptz>,
        payments_locked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    operations (id) {
        id -> Uuid,
        seq -> Int8,
        kind -> Text,
        status -> Text,
        failure_reason -> Nullable<Text>,
        amount -> Int8,
        currency -> Bpchar,
        method -> Nullable<Text>,
        source_card_id -> Nullable<Int8>,
        dest_card_id -> Nullable<Int8>,
        debit_account_id -> Int8,
        credit_account_id -> Int8,
        reverses_id -> Nullable<Uuid>,
        initiated_by -> Nullable<Int8>,
        created_at -> Timestamptz,
        archived_at -> Nullable<Timestamptz>,
        merchant_id -> Nullable<Int8>,
        api_key_id -> Nullable<Int8>,
        order_ref -> Nullable<Text>,
    }
}

diesel::table! {
    merchants (id) {
        id -> Int8,
        owner_id -> Int8,
        account_id -> Int8,
        business_name -> Text,
        contact_email -> Text,
        category -> Text,
        website -> Text,
        description -> Text,
        status -> Text,
        status_reason -> Nullable<Text>,
        decided_by -> Nullable<Int8>,
        decided_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        archived_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    merchant_documents (id) {
        id -> Int8,
        merchant_id -> Int8,
        doc_type -> Text,
        file_name -> Text,
        content_type -> Text,
        size_bytes -> Int8,
        sha256 -> Text,
        storage_key -> Text,
        status -> Text,
        review_note -> Nullable<Text>,
        reviewed_by -> Nullable<Int8>,
        reviewed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        version -> Int4,
        replaces_id -> Nullable<Int8>,
        superseded_by -> Nullable<Int8>,
        withdrawn_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    merchant_api_keys (id) {
        id -> Int8,
        merchant_id -> Int8,
        label -> Text,
        key_id -> Text,
        secret_hash -> Text,
        created_by -> Nullable<Int8>,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        rotated_to -> Nullable<Int8>,
        blocked_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refund_totals (payment_id) {
        payment_id -> Uuid,
        cap -> Int8,
        refunded -> Int8,
    }
}

diesel::table! {
    postings (id) {
        id -> Int8,
        operation_id -> Uuid,
        account_id -> Int8,
        amount -> Int8,
        balance_after -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        request_hash -> Text,
        operation_id -> Nullable<Uuid>,
        response_status -> Int2,
        response_body -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        event_id -> Uuid,
        event_type -> Text,
        schema_version -> Int4,
        aggregate_type -> Text,
        aggregate_key -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(cards -> users (user_id));
diesel::joinable!(cards -> accounts (account_id));
diesel::joinable!(postings -> operations (operation_id));
diesel::joinable!(postings -> accounts (account_id));
diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(merchants -> accounts (account_id));
diesel::table! {
    document_blobs (key) {
        key -> Text,
        bytes -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    notification_preferences (user_id) {
        user_id -> Int8,
        topups -> Bool,
        withdrawals -> Bool,
        payments -> Bool,
        transfers -> Bool,
        transfer_min_amount -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(merchant_documents -> merchants (merchant_id));
diesel::joinable!(merchant_api_keys -> merchants (merchant_id));
diesel::joinable!(user_roles -> roles (role_id));
diesel::joinable!(email_verifications -> users (user_id));
diesel::joinable!(password_resets -> users (user_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(notification_preferences -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    roles,
    users,
    user_roles,
    email_verifications,
    password_resets,
    refresh_tokens,
    mailbox,
    accounts,
    cards,
    operations,
    postings,
    idempotency_keys,
    outbox,
    merchants,
    merchant_documents,
    merchant_api_keys,
    refund_totals,
    document_blobs,
    notification_preferences,
);
