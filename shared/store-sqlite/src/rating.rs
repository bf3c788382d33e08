//! Rating's ports on SQLite: price book versions, assignments and statements as JSON documents in
//! the core's own shapes (`migrations/0010_rating.sql` says why), with the never-edit rules held by
//! triggers as well as here.

use crate::SqliteStore;
use crate::codec::millis;
use crate::db::Failure;
use async_trait::async_trait;
use azs_core::ports::StoreError;
use azs_core::rating::book::{BookVersion, PriceBook};
use azs_core::rating::ports::{
    PriceBookStore, RatingStoreError, StatementStore, check_book_currency, is_new_book_version,
};
use azs_core::rating::{Assignment, Currency, Month, Statement, VerifyRecord};
use azs_core::stamp::StampId;
use azs_core::status::DriftCounts;
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// A stored document that no longer reads back: the database was changed behind our back.
fn unreadable(what: String) -> Failure {
    Failure::Store(StoreError::Other(what))
}

fn from_secs(secs: i64) -> Result<DateTime<Utc>, Failure> {
    DateTime::from_timestamp(secs, 0).ok_or_else(|| unreadable(format!("{secs} s is out of range")))
}

#[async_trait]
impl PriceBookStore for SqliteStore {
    async fn add_book_versions(&self, book: &PriceBook) -> Result<u64, RatingStoreError> {
        let book = book.clone();
        // The domain's refusal travels inside `Ok`, so the transaction is dropped (rolled back) and
        // the busy-retry never sees it.
        self.run(move |db| db.write(|conn| add_versions(conn, &book))).await?
    }

    async fn price_books(&self) -> Result<Vec<PriceBook>, StoreError> {
        self.run(|db| db.read(read_books)).await
    }

    async fn set_assignment(&self, assignment: &Assignment) -> Result<(), StoreError> {
        let a = assignment.clone();
        self.run(move |db| {
            db.write(|conn| {
                conn.execute(
                    "INSERT INTO rating_assignments (billing_subscription_id, effective_from, book_id)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (billing_subscription_id, effective_from) DO UPDATE SET book_id = excluded.book_id",
                    (a.billing_subscription_id.as_deref().unwrap_or(""), a.effective_from.timestamp(), &a.book_id),
                )?;
                Ok(())
            })
        })
        .await
    }

    async fn assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        self.run(|db| {
            db.read(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT billing_subscription_id, effective_from, book_id FROM rating_assignments
                     ORDER BY billing_subscription_id, effective_from",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get(2)?)))?;
                let mut assignments = Vec::new();
                for row in rows {
                    let (sub, from, book_id) = row?;
                    assignments.push(Assignment {
                        billing_subscription_id: (!sub.is_empty()).then_some(sub),
                        book_id,
                        effective_from: from_secs(from)?,
                    });
                }
                Ok(assignments)
            })
        })
        .await
    }
}

fn add_versions(conn: &mut Connection, book: &PriceBook) -> Result<Result<u64, RatingStoreError>, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stored_currency: Option<String> = tx
        .query_row("SELECT currency FROM price_book_versions WHERE book_id = ?1 LIMIT 1", [&book.id], |r| {
            r.get(0)
        })
        .optional()?;
    if let Err(refused) = check_book_currency(book, stored_currency) {
        return Ok(Err(refused));
    }
    let mut added = 0;
    for version in &book.versions {
        let body = version.to_json();
        let stored: Option<String> = tx
            .query_row(
                "SELECT body FROM price_book_versions WHERE book_id = ?1 AND version = ?2",
                (&book.id, version.version),
                |r| r.get(0),
            )
            .optional()?;
        match is_new_book_version(book, version.version, &body, stored.as_deref()) {
            Err(refused) => return Ok(Err(refused)),
            Ok(false) => {}
            Ok(true) => {
                tx.execute(
                    "INSERT INTO price_book_versions
                        (book_id, version, currency, minor_units, effective_from, body, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    (
                        &book.id,
                        version.version,
                        &book.currency.code,
                        book.currency.minor_units,
                        version.effective_from.timestamp(),
                        &body,
                        millis(Utc::now()),
                    ),
                )?;
                added += 1;
            }
        }
    }
    tx.commit()?;
    Ok(Ok(added))
}

fn read_books(conn: &Connection) -> Result<Vec<PriceBook>, Failure> {
    let mut stmt = conn.prepare(
        "SELECT book_id, currency, minor_units, body FROM price_book_versions ORDER BY book_id, effective_from",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?, r.get::<_, String>(3)?))
    })?;
    let mut books: Vec<PriceBook> = Vec::new();
    for row in rows {
        let (id, code, minor_units, body) = row?;
        let version = BookVersion::from_json(&body).map_err(unreadable)?;
        match books.last_mut() {
            Some(book) if book.id == id => book.versions.push(version),
            _ => books.push(PriceBook {
                id,
                currency: Currency { code, minor_units },
                versions: vec![version],
            }),
        }
    }
    Ok(books)
}

/// A page of month ?1 after billing subscription ?2, at most ?3: a seek on statements_by_month
/// (month, billing_subscription_id), read in its order.
pub(crate) const STATEMENTS_PAGE: &str = "SELECT body FROM statements
    WHERE month = ?1 AND billing_subscription_id > ?2 ORDER BY billing_subscription_id LIMIT ?3";

#[async_trait]
impl StatementStore for SqliteStore {
    async fn save_statement(&self, statement: &Statement) -> Result<(), RatingStoreError> {
        let (sub, month, state, body) = (
            statement.billing_subscription_id.clone(),
            statement.month,
            if statement.is_final() { "final" } else { "draft" },
            statement.to_json(),
        );
        self.run(move |db| {
            db.write(|conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let stored: Option<String> = tx
                    .query_row(
                        "SELECT state FROM statements WHERE billing_subscription_id = ?1 AND month = ?2",
                        (&sub, month.to_string()),
                        |r| r.get(0),
                    )
                    .optional()?;
                if stored.as_deref() == Some("final") {
                    return Ok(Err(RatingStoreError::StatementFinal {
                        billing_subscription_id: sub.clone(),
                        month,
                    }));
                }
                tx.execute(
                    "INSERT INTO statements (billing_subscription_id, month, state, body, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (billing_subscription_id, month) DO UPDATE
                        SET state = excluded.state, body = excluded.body, updated_at = excluded.updated_at",
                    (&sub, month.to_string(), state, &body, millis(Utc::now())),
                )?;
                tx.commit()?;
                Ok(Ok(()))
            })
        })
        .await?
    }

    async fn statement(
        &self,
        billing_subscription_id: &str,
        month: Month,
    ) -> Result<Option<Statement>, StoreError> {
        let sub = billing_subscription_id.to_owned();
        self.run(move |db| {
            db.read(|conn| {
                let body: Option<String> = conn
                    .query_row(
                        "SELECT body FROM statements WHERE billing_subscription_id = ?1 AND month = ?2",
                        (&sub, month.to_string()),
                        |r| r.get(0),
                    )
                    .optional()?;
                body.map(|b| Statement::from_json(&b).map_err(unreadable)).transpose()
            })
        })
        .await
    }

    async fn statements(&self, month: Option<Month>) -> Result<Vec<Statement>, StoreError> {
        let month = month.map(|m| m.to_string());
        self.run(move |db| {
            db.read(|conn| {
                read_statements(
                    conn,
                    "SELECT body FROM statements WHERE ?1 IS NULL OR month = ?1 ORDER BY billing_subscription_id, month",
                    [month.as_deref()],
                )
            })
        })
        .await
    }

    async fn statements_page(
        &self,
        month: Month,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Statement>, StoreError> {
        // From the first: after "", which every id (never empty) follows.
        let (month, after) = (month.to_string(), after.unwrap_or_default().to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |db| {
            db.read(|conn| read_statements(conn, STATEMENTS_PAGE, (month.as_str(), after.as_str(), limit)))
        })
        .await
    }

    async fn verify_history(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<VerifyRecord>, StoreError> {
        let stamp = stamp.clone();
        self.run(move |db| {
            db.read(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT verified_at, verified_from, verified_to, drift_missing, drift_extra, drift_changed
                     FROM verify_history
                     WHERE stamp_id = ?1 AND verified_from < ?3 AND verified_to > ?2
                     ORDER BY verified_at, verified_from",
                )?;
                let rows =
                    stmt.query_map((stamp.as_str(), range.start.timestamp(), range.end.timestamp()), |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                        ))
                    })?;
                let mut verifies = Vec::new();
                for row in rows {
                    let (at, from, to, missing, extra, changed) = row?;
                    let at = DateTime::from_timestamp_millis(at)
                        .ok_or_else(|| unreadable(format!("{at} ms is out of range")))?;
                    let range = ReportedWindow::new(from_secs(from)?, from_secs(to)?).ok_or_else(|| {
                        unreadable(format!("verified range {from}..{to} is not whole hours"))
                    })?;
                    let count = |n: i64| {
                        u64::try_from(n).map_err(|_| unreadable(format!("drift count {n} is negative")))
                    };
                    verifies.push(VerifyRecord {
                        at,
                        range,
                        drift: DriftCounts {
                            missing: count(missing)?,
                            extra: count(extra)?,
                            changed: count(changed)?,
                        },
                    });
                }
                Ok(verifies)
            })
        })
        .await
    }

    async fn final_statements(&self, billing_subscription_id: &str) -> Result<Vec<Statement>, StoreError> {
        let sub = billing_subscription_id.to_owned();
        self.run(move |db| {
            db.read(|conn| {
                read_statements(
                    conn,
                    "SELECT body FROM statements WHERE billing_subscription_id = ?1 AND state = 'final' ORDER BY month",
                    [sub.as_str()],
                )
            })
        })
        .await
    }
}

fn read_statements(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Statement>, Failure> {
    let mut stmt = conn.prepare(sql)?;
    let bodies = stmt.query_map(params, |r| r.get::<_, String>(0))?;
    let mut statements = Vec::new();
    for body in bodies {
        statements.push(Statement::from_json(&body?).map_err(unreadable)?);
    }
    Ok(statements)
}
