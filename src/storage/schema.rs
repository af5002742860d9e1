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

diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(user_roles -> roles (role_id));
diesel::joinable!(email_verifications -> users (user_id));
diesel::joinable!(password_resets -> users (user_id));
diesel::joinable!(refresh_tokens -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    roles,
    users,
    user_roles,
    email_verifications,
    password_resets,
    refresh_tokens,
    mailbox,
);
