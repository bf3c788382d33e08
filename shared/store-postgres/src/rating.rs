//! Rating's ports on PostgreSQL: price book versions, assignments and statements as documents in the
//! core's own shapes, the verify history filled by a trigger (`migrations/0003_rating.sql` says why),
//! with the never-edit rules held by triggers as well as here. The same semantics as the SQLite store.

use crate::{Failure, PostgresStore};
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
use deadpool_postgres::GenericClient;

/// Held while a book's versions are compared and added ("azs_book" as a big-endian integer): two
/// imports of one book at once would each find a version missing and one would fail on the key.
const BOOK_LOCK: i64 = 0x617a_735f_626f_6f6b;

/// A stored document that no longer reads back: the database was changed behind our back.
fn unreadable(what: String) -> Failure {
    Failure::Store(StoreError::Other(what))
}

fn count(r: &tokio_postgres::Row, idx: usize) -> Result<u64, Failure> {
    let n: i64 = r.try_get(idx)?;
    u64::try_from(n).map_err(|_| unreadable(format!("drift count {n} is negative")))
}

#[async_trait]
impl PriceBookStore for PostgresStore {
    async fn add_book_versions(&self, book: &PriceBook) -> Result<u64, RatingStoreError> {
        // The domain's refusal travels inside `Ok`, so the transaction is dropped (rolled back) and
        // the retry never sees it.
        Ok(self.run("add_book_versions", |client| Box::pin(add_versions(client, book))).await??)
    }

    async fn price_books(&self) -> Result<Vec<PriceBook>, StoreError> {
        self.run("price_books", |client| Box::pin(async move { read_books(&client).await })).await
    }

    async fn set_assignment(&self, assignment: &Assignment) -> Result<(), StoreError> {
        let sub = assignment.billing_subscription_id.as_deref().unwrap_or("");
        self.run("set_assignment", |client| {
            Box::pin(async move {
                client
                    .execute(
                        "INSERT INTO rating_assignments (billing_subscription_id, effective_from, book_id)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (billing_subscription_id, effective_from)
                             DO UPDATE SET book_id = excluded.book_id",
                        &[&sub, &assignment.effective_from, &assignment.book_id],
                    )
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        self.run("assignments", |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT billing_subscription_id, effective_from, book_id FROM rating_assignments
                         ORDER BY billing_subscription_id, effective_from",
                        &[],
                    )
                    .await?;
                let mut assignments = Vec::with_capacity(rows.len());
                for r in rows {
                    let sub: String = r.try_get(0)?;
                    assignments.push(Assignment {
                        billing_subscription_id: (!sub.is_empty()).then_some(sub),
                        effective_from: r.try_get(1)?,
                        book_id: r.try_get(2)?,
                    });
                }
                Ok(assignments)
            })
        })
        .await
    }
}

async fn add_versions(
    mut client: deadpool_postgres::Object,
    book: &PriceBook,
) -> Result<Result<u64, RatingStoreError>, Failure> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&BOOK_LOCK]).await?;
    let stored_currency: Option<String> = tx
        .query_opt("SELECT currency FROM price_book_versions WHERE book_id = $1 LIMIT 1", &[&book.id])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    if let Err(refused) = check_book_currency(book, stored_currency) {
        return Ok(Err(refused));
    }
    let mut added = 0;
    for version in &book.versions {
        let body = version.to_json();
        let number = i64::from(version.version);
        let stored: Option<String> = tx
            .query_opt(
                "SELECT body FROM price_book_versions WHERE book_id = $1 AND version = $2",
                &[&book.id, &number],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        match is_new_book_version(book, version.version, &body, stored.as_deref()) {
            Err(refused) => return Ok(Err(refused)),
            Ok(false) => {}
            Ok(true) => {
                tx.execute(
                    "INSERT INTO price_book_versions (book_id, version, currency, minor_units, effective_from, body)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &book.id,
                        &number,
                        &book.currency.code,
                        &i64::from(book.currency.minor_units),
                        &version.effective_from,
                        &body,
                    ],
                )
                .await?;
                added += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(Ok(added))
}

async fn read_books(client: &impl GenericClient) -> Result<Vec<PriceBook>, Failure> {
    let rows = client
        .query(
            "SELECT book_id, currency, minor_units, body FROM price_book_versions
             ORDER BY book_id, effective_from",
            &[],
        )
        .await?;
    let mut books: Vec<PriceBook> = Vec::new();
    for r in rows {
        let id: String = r.try_get(0)?;
        let minor_units: i64 = r.try_get(2)?;
        let minor_units = u32::try_from(minor_units)
            .map_err(|_| unreadable(format!("price book {id:?}: minor units {minor_units}")))?;
        let body: String = r.try_get(3)?;
        let version = BookVersion::from_json(&body).map_err(unreadable)?;
        match books.last_mut() {
            Some(book) if book.id == id => book.versions.push(version),
            _ => books.push(PriceBook {
                id,
                currency: Currency { code: r.try_get(1)?, minor_units },
                versions: vec![version],
            }),
        }
    }
    Ok(books)
}

#[async_trait]
impl StatementStore for PostgresStore {
    async fn save_statement(&self, statement: &Statement) -> Result<(), RatingStoreError> {
        let sub = statement.billing_subscription_id.as_str();
        let month = statement.month;
        let month_text = month.to_string();
        let state = if statement.is_final() { "final" } else { "draft" };
        let body = statement.to_json();
        let (month_text, body) = (&month_text, &body);
        // One statement: a final one is left as it is (the WHERE), so nothing is written and the
        // count says so; the trigger refuses it too, should a future path forget the WHERE.
        let written = self
            .run("save_statement", |client| {
                Box::pin(async move {
                    Ok(client
                        .execute(
                            "INSERT INTO statements (billing_subscription_id, month, state, body, updated_at)
                             VALUES ($1, $2, $3, $4, now())
                             ON CONFLICT (billing_subscription_id, month) DO UPDATE
                                 SET state = excluded.state, body = excluded.body, updated_at = excluded.updated_at
                                 WHERE statements.state <> 'final'",
                            &[&sub, month_text, &state, body],
                        )
                        .await?)
                })
            })
            .await?;
        if written == 0 {
            return Err(RatingStoreError::StatementFinal { billing_subscription_id: sub.to_owned(), month });
        }
        Ok(())
    }

    async fn statement(
        &self,
        billing_subscription_id: &str,
        month: Month,
    ) -> Result<Option<Statement>, StoreError> {
        let month = month.to_string();
        let month = &month;
        self.run("statement", |client| {
            Box::pin(async move {
                let row = client
                    .query_opt(
                        "SELECT body FROM statements WHERE billing_subscription_id = $1 AND month = $2",
                        &[&billing_subscription_id, month],
                    )
                    .await?;
                row.map(|r| {
                    let body: String = r.try_get(0)?;
                    Statement::from_json(&body).map_err(unreadable)
                })
                .transpose()
            })
        })
        .await
    }

    async fn statements(&self, month: Option<Month>) -> Result<Vec<Statement>, StoreError> {
        let month = month.map(|m| m.to_string());
        let month = &month;
        self.run("statements", |client| {
            Box::pin(async move {
                read_statements(
                    &client,
                    "SELECT body FROM statements WHERE $1::text IS NULL OR month = $1
                     ORDER BY billing_subscription_id, month",
                    month.as_deref(),
                )
                .await
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
        let month = month.to_string();
        let month = &month;
        // From the first: after "", which every id (never empty) follows.
        let after = after.unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run("statements_page", |client| {
            Box::pin(async move {
                // A seek on statements_by_month (month, billing_subscription_id), in "C" order.
                let rows = client
                    .query(
                        "SELECT body FROM statements WHERE month = $1 AND billing_subscription_id > $2
                         ORDER BY billing_subscription_id LIMIT $3",
                        &[month, &after, &limit],
                    )
                    .await?;
                bodies(rows)
            })
        })
        .await
    }

    async fn final_statements(&self, billing_subscription_id: &str) -> Result<Vec<Statement>, StoreError> {
        self.run("final_statements", |client| {
            Box::pin(async move {
                read_statements(
                    &client,
                    "SELECT body FROM statements WHERE billing_subscription_id = $1 AND state = 'final'
                     ORDER BY month",
                    Some(billing_subscription_id),
                )
                .await
            })
        })
        .await
    }

    async fn verify_history(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<VerifyRecord>, StoreError> {
        self.run("verify_history", |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT verified_at, verified_from, verified_to, drift_missing, drift_extra, drift_changed
                         FROM verify_history
                         WHERE stamp_id = $1 AND verified_from < $3 AND verified_to > $2
                         ORDER BY verified_at, verified_from",
                        &[&stamp.as_str(), &range.start, &range.end],
                    )
                    .await?;
                let mut verifies = Vec::with_capacity(rows.len());
                for r in rows {
                    let (from, to): (DateTime<Utc>, DateTime<Utc>) = (r.try_get(1)?, r.try_get(2)?);
                    let range = ReportedWindow::new(from, to)
                        .ok_or_else(|| unreadable(format!("verified range {from}..{to} is not whole hours")))?;
                    verifies.push(VerifyRecord {
                        at: r.try_get(0)?,
                        range,
                        drift: DriftCounts { missing: count(&r, 3)?, extra: count(&r, 4)?, changed: count(&r, 5)? },
                    });
                }
                Ok(verifies)
            })
        })
        .await
    }
}

async fn read_statements(
    client: &impl GenericClient,
    sql: &str,
    param: Option<&str>,
) -> Result<Vec<Statement>, Failure> {
    bodies(client.query(sql, &[&param]).await?)
}

/// The statements whose JSON bodies are the rows' first column.
fn bodies(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Statement>, Failure> {
    let mut statements = Vec::with_capacity(rows.len());
    for r in rows {
        let body: String = r.try_get(0)?;
        statements.push(Statement::from_json(&body).map_err(unreadable)?);
    }
    Ok(statements)
}
