//! E-mail: the `Mailer` with two transports — SMTP (lettre, STARTTLS/TLS) and the development mailbox
//! that keeps messages in the database, listable by admins at `GET /api/v1/admin/mailbox` — the
//! templates (minijinja, HTML auto-escaped), the e-mail jobs and their sender (retries, dead letters),
//! the notifier: the event consumer that turns events into e-mail jobs, and the users' notification
//! preferences (which money e-mails they get).
//!
//! Every e-mail is an `email_jobs` row first. Jobs that carry a secret (verification codes, reset
//! tokens) are written by identity in the transaction that creates the secret and never pass through
//! the broker; all others are written by the notifier from events. See `docs/events.md`.

pub mod jobs;
pub mod notifier;
pub mod preferences;
pub mod routes;
pub mod templates;

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
    /// Stable per job (`<job-N@payd>`), so a receiving system can drop a duplicate.
    pub message_id: Option<String>,
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
                let mut builder = builder.port(settings.smtp_port).timeout(Some(std::time::Duration::from_secs(15)));
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
    /// Sends `emails`, at most `concurrency` at a time over SMTP; the mailbox stores them all in one
    /// statement. One result per e-mail, in order.
    pub async fn send_all(&self, emails: Vec<Email>, concurrency: usize) -> Vec<Result<(), MailError>> {
        use futures::StreamExt;
        match self {
            Self::Mailbox(pool) => {
                let n = emails.len();
                if n == 0 {
                    return Vec::new();
                }
                let stored = storage::run(pool, move |conn| {
                    let rows: Vec<_> = emails
                        .iter()
                        .map(|e| {
                            (
                                mailbox::to_address.eq(&e.to),
                                mailbox::subject.eq(&e.subject),
                                mailbox::text_body.eq(&e.text),
                                mailbox::html_body.eq(&e.html),
                            )
                        })
                        .collect();
                    diesel::insert_into(mailbox::table).values(&rows).execute(conn).map_err(StorageError::from)
                })
                .await;
                match stored {
                    Ok(_) => (0..n).map(|_| Ok(())).collect(),
                    Err(e) => (0..n).map(|_| Err(MailError::Storage(e.clone()))).collect(),
                }
            }
            Self::Smtp { .. } => {
                futures::stream::iter(emails).map(|e| self.send(e)).buffered(concurrency.max(1)).collect().await
            }
        }
    }

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
                    .message_id(email.message_id)
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
