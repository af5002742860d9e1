//! E-mail: the `Mailer` with two transports — SMTP (lettre, STARTTLS/TLS) and the development mailbox
//! that keeps messages in the database, listable by admins at `GET /api/v1/admin/mailbox`.

pub mod routes;

use std::sync::Arc;

use diesel::prelude::*;
use lettre::message::{header::ContentType, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{MailSettings, MailTransport, SmtpTls};
use crate::storage::{self, schema::mailbox, PgPool, StorageError};

/// One message, with both a plain-text and an HTML body.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A message could not be handed to the transport.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address: {0}")]
    Address(String),
    #[error("smtp: {0}")]
    Smtp(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Clone)]
pub enum Mailer {
    /// Development: messages are stored in the `mailbox` table.
    Mailbox(PgPool),
    Smtp {
        transport: Arc<AsyncSmtpTransport<Tokio1Executor>>,
        from: lettre::message::Mailbox,
    },
}

impl Mailer {
    /// Builds the configured transport.
    ///
    /// # Errors
    /// `MailError` for a malformed sender or SMTP settings.
    pub fn new(settings: &MailSettings, pool: PgPool) -> Result<Self, MailError> {
        match settings.transport {
            MailTransport::Mailbox => Ok(Self::Mailbox(pool)),
            MailTransport::Smtp => {
                let from = settings
                    .from
                    .parse()
                    .map_err(|e: lettre::address::AddressError| MailError::Address(e.to_string()))?;
                let builder = match settings.smtp_tls {
                    SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.smtp_host),
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.smtp_host),
                    SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.smtp_host)),
                }
                .map_err(|e| MailError::Smtp(e.to_string()))?;
                let mut builder = builder.port(settings.smtp_port);
                if !settings.smtp_username.is_empty() {
                    builder = builder.credentials(Credentials::new(
                        settings.smtp_username.clone(),
                        settings.smtp_password.expose().to_owned(),
                    ));
                }
                Ok(Self::Smtp { transport: Arc::new(builder.build()), from })
            }
        }
    }

    /// Delivers one message.
    ///
    /// # Errors
    /// `MailError` when the transport refuses it.
    pub async fn send(&self, email: Email) -> Result<(), MailError> {
        match self {
            Self::Mailbox(pool) => {
                storage::run(pool, move |conn| {
                    diesel::insert_into(mailbox::table)
                        .values((
                            mailbox::to_address.eq(&email.to),
                            mailbox::subject.eq(&email.subject),
                            mailbox::text_body.eq(&email.text),
                            mailbox::html_body.eq(&email.html),
                        ))
                        .execute(conn)
                        .map_err(StorageError::from)
                })
                .await?;
                Ok(())
            }
            Self::Smtp { transport, from } => {
                let to =
                    email.to.parse().map_err(|e: lettre::address::AddressError| MailError::Address(e.to_string()))?;
                let message = lettre::Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(email.subject)
                    .multipart(
                        MultiPart::alternative()
                            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(email.text))
                            .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(email.html)),
                    )
                    .map_err(|e| MailError::Smtp(e.to_string()))?;
                transport.send(message).await.map_err(|e| MailError::Smtp(e.to_string()))?;
                Ok(())
            }
        }
    }
}

/// Escapes text for inclusion in HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A simple message: a greeting line, paragraphs, and an optional highlighted value (code or token).
pub fn compose(to: &str, name: &str, subject: &str, paragraphs: &[&str], highlight: Option<&str>) -> Email {
    let mut text = format!("Hello {name},\n\n");
    let mut html = format!("<p>Hello {},</p>", escape_html(name));
    for p in paragraphs {
        text.push_str(p);
        text.push_str("\n\n");
        html.push_str(&format!("<p>{}</p>", escape_html(p)));
    }
    if let Some(h) = highlight {
        text.push_str(&format!("    {h}\n\n"));
        html.push_str(&format!("<p><strong style=\"font-size:1.4em\">{}</strong></p>", escape_html(h)));
    }
    text.push_str("— payd\n");
    html.push_str("<p>— payd</p>");
    Email { to: to.to_owned(), subject: subject.to_owned(), text, html }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        let e = compose("a@b.c", "<script>x</script>", "s", &["1 < 2 & \"q\""], Some("<b>"));
        assert!(!e.html.contains("<script>"));
        assert!(e.html.contains("&lt;script&gt;"));
        assert!(e.html.contains("1 &lt; 2 &amp; &quot;q&quot;"));
        assert!(e.text.contains("<script>x</script>"));
    }
}
