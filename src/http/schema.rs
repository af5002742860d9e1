//! Schema pieces shared by the request types: the OpenAPI form of the rules their `validator`
//! attributes check (the `schema_drift` test in `routes.rs` keeps the two in step).

use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};

/// A string with at least one character that is not whitespace (what `not_blank` checks; the class
/// lists exactly the characters Rust's `char::is_whitespace` accepts).
pub const NOT_BLANK: &str =
    "[^\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

fn string_enum(values: &[&str], nullable: bool, description: &str) -> RefOr<Schema> {
    let ty = if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { SchemaType::new(Type::String) };
    let mut values: Vec<serde_json::Value> = values.iter().map(|v| serde_json::Value::from(*v)).collect();
    if nullable {
        values.push(serde_json::Value::Null);
    }
    RefOr::T(Schema::Object(
        ObjectBuilder::new().schema_type(ty).enum_values(Some(values)).description(Some(description)).build(),
    ))
}

/// Top-up and payment methods ([`crate::payments::methods::METHODS`]).
pub fn method() -> RefOr<Schema> {
    string_enum(crate::payments::methods::METHODS, false, "Payment method")
}

/// Card brands ([`crate::cards::pan::BRANDS`]).
pub fn brand() -> RefOr<Schema> {
    let names: Vec<&str> = crate::cards::pan::BRANDS.iter().map(|b| b.0).collect();
    string_enum(&names, false, "Card brand")
}

/// Card types.
pub fn card_type() -> RefOr<Schema> {
    string_enum(&["debit", "credit"], false, "`debit` or `credit`")
}

/// A document review decision.
pub fn decision() -> RefOr<Schema> {
    string_enum(&["approve", "reject"], false, "`approve` or `reject`")
}
