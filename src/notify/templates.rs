//! E-mail templates: minijinja, one `.txt` and one `.html` template per kind (both extending a
//! base), subjects from [`KINDS`]. HTML templates are auto-escaped (minijinja escapes templates whose
//! name ends in `.html`); text templates are not. Values come from the job's JSON context.

use minijinja::{Environment, Value};
use once_cell::sync::Lazy;

use crate::notify::Email;

/// Every kind of e-mail: template name and subject (itself a template, rendered as text).
pub const KINDS: &[(&str, &str)] = &[
    ("verify_email", "Welcome to payd — verify your e-mail"),
    ("verification_code", "Your new payd verification code"),
    ("password_reset", "Reset your payd password"),
    ("email_verified", "Your e-mail is verified"),
    (
        "password_changed",
        "{% if via == \"reset\" %}Your payd password was reset{% else %}Your payd password was changed{% endif %}",
    ),
    ("topup", "Top-up of {{ amount|money(currency) }} completed"),
    ("withdrawal", "Withdrawal of {{ amount|money(currency) }} completed"),
    ("transfer_sent", "You sent {{ amount|money(currency) }}"),
    ("transfer_received", "You received {{ amount|money(currency) }}"),
    ("payment_customer", "Payment of {{ amount|money(currency) }} to {{ merchant }}"),
    ("payment_merchant", "Payment received: {{ amount|money(currency) }}"),
    ("refund_customer", "Refund of {{ amount|money(currency) }} from {{ merchant }}"),
    ("refund_merchant", "Refund issued: {{ amount|money(currency) }}"),
    ("merchant_applied", "We received the application of {{ merchant }}"),
    ("merchant_status", "{{ merchant }} is now {{ new_status }}"),
    ("document_reviewed", "Document {{ status }} for {{ merchant }}"),
    (
        "document_submitted",
        "{% if replaced %}Document replaced{% else %}Document submitted{% endif %} for review: {{ merchant }}",
    ),
    ("webhook_disabled", "Webhook endpoint disabled for {{ merchant }}"),
];

macro_rules! sources {
    ($($name:literal),* $(,)?) => {
        &[$(
            (concat!($name, ".txt"), include_str!(concat!("templates/", $name, ".txt"))),
            (concat!($name, ".html"), include_str!(concat!("templates/", $name, ".html"))),
        )*]
    };
}

const SOURCES: &[(&str, &str)] = sources!(
    "base",
    "verify_email",
    "verification_code",
    "password_reset",
    "email_verified",
    "password_changed",
    "topup",
    "withdrawal",
    "transfer_sent",
    "transfer_received",
    "payment_customer",
    "payment_merchant",
    "refund_customer",
    "refund_merchant",
    "merchant_applied",
    "merchant_status",
    "document_reviewed",
    "document_submitted",
    "webhook_disabled",
);

/// A template could not be rendered (unknown kind, or a bug in a template).
#[derive(Debug, thiserror::Error)]
#[error("template {kind}: {message}")]
pub struct TemplateError {
    pub kind: String,
    pub message: String,
}

/// `123456789` minor units of `IDR` → `IDR 1,234,567.89`.
pub fn money(amount: i64, currency: &str) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let (units, cents) = (abs / 100, abs % 100);
    let digits = units.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{currency} {grouped}.{cents:02}")
}

fn money_filter(amount: i64, currency: Option<String>) -> String {
    money(amount, currency.as_deref().unwrap_or(""))
}

static ENV: Lazy<Result<Environment<'static>, String>> = Lazy::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.add_filter("money", money_filter);
    for (name, src) in SOURCES {
        env.add_template(name, src).map_err(|e| format!("{name}: {e}"))?;
    }
    for (kind, subject) in KINDS {
        // No extension: subjects are plain text, never HTML-escaped.
        env.add_template_owned(format!("{kind}.subject"), (*subject).to_owned())
            .map_err(|e| format!("{kind}.subject: {e}"))?;
    }
    Ok(env)
});

/// Renders e-mail `kind` for `to` with `context` (a JSON object).
///
/// # Errors
/// `TemplateError` for an unknown kind or a template that fails to render.
pub fn render(kind: &str, to: &str, context: &serde_json::Value) -> Result<Email, TemplateError> {
    let err = |message: String| TemplateError { kind: kind.to_owned(), message };
    let env = ENV.as_ref().map_err(|e| err(e.clone()))?;
    if !KINDS.iter().any(|(k, _)| *k == kind) {
        return Err(err("unknown e-mail kind".into()));
    }
    let ctx = Value::from_serialize(context);
    let render = |name: String, ctx: Value| -> Result<String, TemplateError> {
        env.get_template(&name).and_then(|t| t.render(ctx)).map_err(|e| err(e.to_string()))
    };
    let subject = render(format!("{kind}.subject"), ctx.clone())?.trim().to_owned();
    let full = minijinja::context! { subject => subject.clone(), ..ctx };
    let text = render(format!("{kind}.txt"), full.clone())?;
    let html = render(format!("{kind}.html"), full)?;
    Ok(Email { message_id: None, to: to.to_owned(), subject, text, html })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_renders() {
        let ctx = json!({"name": "Ana", "code": "123456", "minutes": 15, "token": "pr_x", "via": "reset",
            "amount": 1234567, "currency": "IDR", "card": "4111 •••• 1111", "counterpart": "5500 •••• 0004",
            "operation_id": "op", "merchant": "Shop", "new_status": "active", "status": "approved",
            "url": "https://x.example/h", "failures": 5});
        for (kind, _) in KINDS {
            let e = render(kind, "a@b.c", &ctx).unwrap();
            assert!(!e.subject.is_empty() && e.text.contains("Hello Ana") && e.html.contains("Hello Ana"), "{kind}");
        }
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let ctx = json!({"name": "<script>x</script>", "merchant": "A & B \"co\"", "new_status": "active"});
        let e = render("merchant_status", "a@b.c", &ctx).unwrap();
        assert!(!e.html.contains("<script>"), "{}", e.html);
        assert!(e.html.contains("&lt;script&gt;"));
        assert!(e.html.contains("A &amp; B &quot;co&quot;"));
        assert!(e.text.contains("<script>x</script>") && e.text.contains("A & B \"co\""));
        assert_eq!(e.subject, "A & B \"co\" is now active");
    }

    #[test]
    fn money_is_grouped() {
        assert_eq!(money(123_456_789, "IDR"), "IDR 1,234,567.89");
        assert_eq!(money(5, "IDR"), "IDR 0.05");
        assert_eq!(money(100_000, "IDR"), "IDR 1,000.00");
        assert_eq!(money(-250, "USD"), "-USD 2.50");
    }

    #[test]
    fn unknown_kind_is_an_error() {
        assert!(render("nope", "a@b.c", &json!({})).is_err());
    }
}
