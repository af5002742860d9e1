//! Every migration applies, reverts and re-applies cleanly (the `diesel migration redo` check), and the
//! hand-written schema matches the migrated database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

fn server() -> String {
    std::env::var("PAYD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[test]
fn migrations_go_up_down_and_up_again() {
    let name = format!("payd_mig_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(&format!("{}/postgres", server())).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    {
        let mut conn = PgConnection::establish(&format!("{}/{name}", server())).unwrap();
        let applied = payd::storage::migrate_up(&mut conn).unwrap();
        assert!(applied.len() >= 3, "{applied:?}");
        let status = payd::storage::migration_status(&mut conn).unwrap();
        assert!(status.iter().all(|(_, done)| *done), "{status:?}");
        // Revert every migration, newest first.
        for _ in 0..applied.len() {
            payd::storage::migrate_down(&mut conn).unwrap();
        }
        let status = payd::storage::migration_status(&mut conn).unwrap();
        assert!(status.iter().all(|(_, done)| !*done), "{status:?}");
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let left: N = diesel::sql_query(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name <> '__diesel_schema_migrations'",
        )
        .get_result(&mut conn)
        .unwrap();
        assert_eq!(left.n, 0, "down migrations must remove every table");
        let again = payd::storage::migrate_up(&mut conn).unwrap();
        assert_eq!(again.len(), applied.len());
        // The diesel schema matches the database: a select over every table's columns works.
        use payd::storage::schema::*;
        users::table
            .select(users::all_columns)
            .load::<(
                i64,
                String,
                String,
                String,
                String,
                Option<chrono::DateTime<chrono::Utc>>,
                chrono::DateTime<chrono::Utc>,
                chrono::DateTime<chrono::Utc>,
                Option<chrono::DateTime<chrono::Utc>>,
                Option<String>,
            )>(&mut conn)
            .unwrap();
        accounts::table.select(accounts::id).load::<i64>(&mut conn).unwrap();
        cards::table.select(cards::all_columns).limit(1).execute(&mut conn).unwrap();
        notification_preferences::table
            .select(notification_preferences::all_columns)
            .limit(1)
            .execute(&mut conn)
            .unwrap();
        operations::table.select(operations::all_columns).limit(1).execute(&mut conn).unwrap();
        postings::table.select(postings::all_columns).limit(1).execute(&mut conn).unwrap();
        idempotency_keys::table.select(idempotency_keys::all_columns).limit(1).execute(&mut conn).unwrap();
        outbox::table.select(outbox::all_columns).limit(1).execute(&mut conn).unwrap();
        merchants::table.select(merchants::all_columns).limit(1).execute(&mut conn).unwrap();
        merchant_documents::table.select(merchant_documents::all_columns).limit(1).execute(&mut conn).unwrap();
        merchant_api_keys::table.select(merchant_api_keys::all_columns).limit(1).execute(&mut conn).unwrap();
        refund_totals::table.select(refund_totals::all_columns).limit(1).execute(&mut conn).unwrap();
        roles::table.select(roles::all_columns).limit(1).execute(&mut conn).unwrap();
        user_roles::table.select(user_roles::all_columns).limit(1).execute(&mut conn).unwrap();
        refresh_tokens::table.select(refresh_tokens::all_columns).limit(1).execute(&mut conn).unwrap();
        mailbox::table.select(mailbox::all_columns).limit(1).execute(&mut conn).unwrap();
    }
    admin.batch_execute(&format!("DROP DATABASE {name}")).unwrap();
}
