//! Rating's ports on SQL Server: price book versions, assignments and statements as documents in the
//! core's own shapes, the verify history filled by a trigger on the status row (`sql.rs`, schema v1),
//! with the never-edit rules held by triggers as well as here. The same semantics as the SQLite store.

use crate::SqlServerStore;
use crate::bind::{self, BookVersionColumns, StatementColumns};
use crate::session::{Failure, Session};
use crate::sql;
use crate::types::{self, req, stamp_key, text, unsigned};
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

/// A stored document that no longer reads back: the database was changed behind our back.
fn unreadable(what: String) -> Failure {
    Failure::other(what)
}

#[async_trait]
impl PriceBookStore for SqlServerStore {
    async fn add_book_versions(&self, book: &PriceBook) -> Result<u64, RatingStoreError> {
        // The domain's refusal travels inside `Ok` and the transaction is rolled back for it, so the
        // retry never sees it.
        Ok(self
            .run("add_book_versions", |mut s| Box::pin(async move { add_versions(&mut s, book).await }))
            .await??)
    }

    async fn price_books(&self) -> Result<Vec<PriceBook>, StoreError> {
        self.run("price_books", |mut s| {
            Box::pin(async move {
                let rows = s.query(bind::none(&sql::LIST_BOOK_VERSIONS)).await?;
                let mut books: Vec<PriceBook> = Vec::new();
                for r in &rows {
                    let id = text(r, 0)?;
                    let minor_units: i32 = req(r, 2)?;
                    let minor_units = u32::try_from(minor_units)
                        .map_err(|_| unreadable(format!("price book {id:?}: minor units {minor_units}")))?;
                    let version = BookVersion::from_json(&text(r, 3)?).map_err(unreadable)?;
                    match books.last_mut() {
                        Some(book) if book.id == id => book.versions.push(version),
                        _ => books.push(PriceBook {
                            id,
                            currency: Currency { code: text(r, 1)?, minor_units },
                            versions: vec![version],
                        }),
                    }
                }
                Ok(books)
            })
        })
        .await
    }

    async fn set_assignment(&self, assignment: &Assignment) -> Result<(), StoreError> {
        let sub = assignment.billing_subscription_id.as_deref().unwrap_or("");
        let from = types::seconds(assignment.effective_from);
        let book = assignment.book_id.as_str();
        self.run("set_assignment", |mut s| {
            Box::pin(async move {
                s.begin().await?;
                let result = async {
                    if s.query_one(bind::assignment_exists(sub, from)).await?.is_some() {
                        s.execute(bind::update_assignment(sub, from, book)).await?;
                    } else {
                        s.execute(bind::insert_assignment(sub, from, book)).await?;
                    }
                    Ok(())
                }
                .await;
                s.finish(result).await
            })
        })
        .await
    }

    async fn assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        self.run("assignments", |mut s| {
            Box::pin(async move {
                let rows = s.query(bind::none(&sql::LIST_ASSIGNMENTS)).await?;
                let mut assignments = Vec::with_capacity(rows.len());
                for r in &rows {
                    let sub = text(r, 0)?;
                    assignments.push(Assignment {
                        billing_subscription_id: (!sub.is_empty()).then_some(sub),
                        effective_from: req(r, 1)?,
                        book_id: text(r, 2)?,
                    });
                }
                Ok(assignments)
            })
        })
        .await
    }
}

/// Compares and adds `book`'s versions in one transaction; a refusal rolls it back.
async fn add_versions(s: &mut Session, book: &PriceBook) -> Result<Result<u64, RatingStoreError>, Failure> {
    s.begin().await?;
    let result = add_versions_in(s, book).await;
    match result {
        Ok(Ok(added)) => s.finish(Ok(Ok(added))).await,
        Ok(Err(refused)) => {
            s.rollback().await;
            Ok(Err(refused))
        }
        Err(failure) => s.finish(Err(failure)).await,
    }
}

async fn add_versions_in(
    s: &mut Session,
    book: &PriceBook,
) -> Result<Result<u64, RatingStoreError>, Failure> {
    s.query(bind::none(&sql::LOCK_PRICE_BOOKS)).await?;
    let stored_currency = match s.query_one(bind::book_currency(&book.id)).await? {
        Some(row) => Some(text(&row, 0)?),
        None => None,
    };
    if let Err(refused) = check_book_currency(book, stored_currency) {
        return Ok(Err(refused));
    }
    let minor_units = i32::try_from(book.currency.minor_units).map_err(|_| {
        Failure::other(format!("minor units {} do not fit an int", book.currency.minor_units))
    })?;
    let mut added = 0;
    for version in &book.versions {
        let body = version.to_json();
        let number = i64::from(version.version);
        let stored = match s.query_one(bind::book_version_body(&book.id, number)).await? {
            Some(row) => Some(text(&row, 0)?),
            None => None,
        };
        match is_new_book_version(book, version.version, &body, stored.as_deref()) {
            Err(refused) => return Ok(Err(refused)),
            Ok(false) => {}
            Ok(true) => {
                let columns = BookVersionColumns {
                    book_id: &book.id,
                    version: number,
                    currency: &book.currency.code,
                    minor_units,
                    effective_from: types::seconds(version.effective_from),
                    body,
                    created_at: types::millis(Utc::now()),
                };
                s.execute(bind::insert_book_version(&columns)).await?;
                added += 1;
            }
        }
    }
    Ok(Ok(added))
}

#[async_trait]
impl StatementStore for SqlServerStore {
    async fn save_statement(&self, statement: &Statement) -> Result<(), RatingStoreError> {
        let columns = StatementColumns {
            billing_subscription_id: &statement.billing_subscription_id,
            month: statement.month.to_string(),
            state: if statement.is_final() { "final" } else { "draft" },
            body: statement.to_json(),
            updated_at: types::millis(Utc::now()),
        };
        let columns = &columns;
        let saved = self
            .run("save_statement", |mut s| {
                Box::pin(async move {
                    s.begin().await?;
                    let result = async {
                        let state = match s
                            .query_one(bind::statement_state(columns.billing_subscription_id, &columns.month))
                            .await?
                        {
                            Some(row) => Some(text(&row, 0)?),
                            None => None,
                        };
                        match state.as_deref() {
                            Some("final") => return Ok(false),
                            Some(_) => s.execute(bind::update_statement(columns)).await?,
                            None => s.execute(bind::insert_statement(columns)).await?,
                        };
                        Ok(true)
                    }
                    .await;
                    s.finish(result).await
                })
            })
            .await?;
        if !saved {
            return Err(RatingStoreError::StatementFinal {
                billing_subscription_id: statement.billing_subscription_id.clone(),
                month: statement.month,
            });
        }
        Ok(())
    }

    async fn statement(
        &self,
        billing_subscription_id: &str,
        month: Month,
    ) -> Result<Option<Statement>, StoreError> {
        let month = month.to_string();
        let month = month.as_str();
        self.run("statement", |mut s| {
            Box::pin(async move {
                match s.query_one(bind::get_statement(billing_subscription_id, month)).await? {
                    Some(row) => Ok(Some(Statement::from_json(&text(&row, 0)?).map_err(unreadable)?)),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    async fn statements(&self, month: Option<Month>) -> Result<Vec<Statement>, StoreError> {
        let month = month.map(|m| m.to_string());
        let month = month.as_deref();
        self.run("statements", |mut s| {
            Box::pin(async move { read_statements(s.query(bind::list_statements(month)).await?) })
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
        let month = month.as_str();
        let after = after.unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run("statements_page", |mut s| {
            Box::pin(
                async move { read_statements(s.query(bind::statements_page(month, after, limit)).await?) },
            )
        })
        .await
    }

    async fn final_statements(&self, billing_subscription_id: &str) -> Result<Vec<Statement>, StoreError> {
        self.run("final_statements", |mut s| {
            Box::pin(async move {
                read_statements(s.query(bind::final_statements(billing_subscription_id)).await?)
            })
        })
        .await
    }

    async fn verify_history(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<VerifyRecord>, StoreError> {
        // A stamp id that is no GUID was never registered here, so it was never verified.
        let Some(key) = stamp_key(stamp) else { return Ok(Vec::new()) };
        self.run("verify_history", |mut s| {
            Box::pin(async move {
                let rows = s.query(bind::verify_history(key, range.start, range.end)).await?;
                let mut verifies = Vec::with_capacity(rows.len());
                for r in &rows {
                    let (from, to): (DateTime<Utc>, DateTime<Utc>) = (req(r, 1)?, req(r, 2)?);
                    let range = ReportedWindow::new(from, to).ok_or_else(|| {
                        unreadable(format!("verified range {from}..{to} is not whole hours"))
                    })?;
                    verifies.push(VerifyRecord {
                        at: req(r, 0)?,
                        range,
                        drift: DriftCounts {
                            missing: unsigned(r, 3)?,
                            extra: unsigned(r, 4)?,
                            changed: unsigned(r, 5)?,
                        },
                    });
                }
                Ok(verifies)
            })
        })
        .await
    }
}

fn read_statements(rows: Vec<tiberius::Row>) -> Result<Vec<Statement>, Failure> {
    rows.iter().map(|r| Statement::from_json(&text(r, 0)?).map_err(unreadable)).collect()
}
