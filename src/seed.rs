//! `payd seed`: demo data for a development platform, with a progress bar.

use chrono::Utc;
use diesel::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::AppState;
use crate::config::Settings;
use crate::identity::{model, password, IdentityError};
use crate::storage::{self, schema::users};

/// The password of every demo account (development only).
pub const DEMO_PASSWORD: &str = "demo-password-1";

/// Creates `admin@payd.local` and `count` verified demo users (idempotent: existing e-mails are kept).
///
/// # Errors
/// When the database cannot be prepared or written.
pub async fn run(settings: Settings, count: u32) -> anyhow::Result<()> {
    let state = AppState::start(settings).await?;
    let hash = password::hash(DEMO_PASSWORD.to_owned()).await.map_err(anyhow::Error::msg)?;
    let bar = ProgressBar::new(u64::from(count) + 1);
    bar.set_style(ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len}")?.progress_chars("=> "));
    bar.set_message("users");
    let mut people = vec![("Demo".to_owned(), "Admin".to_owned(), "admin@payd.local".to_owned(), true)];
    for i in 1..=count {
        people.push((format!("Demo{i}"), "User".to_owned(), format!("user{i}@payd.local"), false));
    }
    for (first, last, email, admin) in people {
        let hash = hash.clone();
        storage::transaction(&state.db, move |conn| {
            let id = match model::find_user_by_email(conn, &email)? {
                Some(u) => u.id,
                None => diesel::insert_into(users::table)
                    .values((
                        users::first_name.eq(&first),
                        users::last_name.eq(&last),
                        users::email.eq(&email),
                        users::password_hash.eq(&hash),
                        users::email_verified_at.eq(Utc::now()),
                    ))
                    .returning(users::id)
                    .get_result(conn)?,
            };
            model::grant_role(conn, id, model::ROLE_USER)?;
            if admin {
                model::grant_role(conn, id, model::ROLE_ADMIN)?;
            }
            Ok::<_, IdentityError>(())
        })
        .await?;
        bar.inc(1);
    }
    bar.finish_with_message("done");
    println!("seeded admin@payd.local and {count} users (password: {DEMO_PASSWORD})");
    Ok(())
}
