//! The ports rating reads and writes through: price books and assignments, and statements. Apart
//! from [`crate::ports::Store`]: the collector never needs them. Every store keeps them (the parity
//! check in `tests/store-conformance` holds each to SQLite's).
//!
//! Two rules every implementation keeps, in the database itself where it can:
//! - a stored book version is never edited (importing it again unchanged is a no-op; changed, it is
//!   refused whole): a price correction is a new version;
//! - a final statement is never changed or removed; a draft is replaced by the next draft or by its
//!   final.

use super::assign::Assignment;
use super::book::PriceBook;
use super::money::Month;
use super::statement::{Statement, VerifyRecord};
use crate::ports::StoreError;
use crate::stamp::StampId;
use crate::window::ReportedWindow;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum RatingStoreError {
    #[error(
        "price book {book:?} version {version} is stored with other content and is never edited: add a new version"
    )]
    VersionChanged { book: String, version: u32 },
    #[error("price book {book:?} is stored in {stored}, not {imported}")]
    CurrencyChanged { book: String, stored: String, imported: String },
    #[error("the statement of {billing_subscription_id} for {month} is final and never changes")]
    StatementFinal { billing_subscription_id: String, month: Month },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The import rule on a book's currency, for every store: a book keeps the currency it was first
/// stored in (`stored`: the currency of any stored version).
pub fn check_book_currency(book: &PriceBook, stored: Option<String>) -> Result<(), RatingStoreError> {
    match stored.filter(|c| *c != book.currency.code) {
        Some(stored) => Err(RatingStoreError::CurrencyChanged {
            book: book.id.clone(),
            stored,
            imported: book.currency.code.clone(),
        }),
        None => Ok(()),
    }
}

/// The import rule on one version, for every store: `body` (the version as imported) against what is
/// stored under its number. `Ok(true)`: new, to be added; `Ok(false)`: stored unchanged, nothing to
/// do; an error when it is stored with other content (a stored version is never edited).
pub fn is_new_book_version(
    book: &PriceBook,
    version: u32,
    body: &str,
    stored: Option<&str>,
) -> Result<bool, RatingStoreError> {
    match stored {
        None => Ok(true),
        Some(stored) if stored == body => Ok(false),
        Some(_) => Err(RatingStoreError::VersionChanged { book: book.id.clone(), version }),
    }
}

/// Price books and who rates with which.
#[async_trait]
pub trait PriceBookStore: Send + Sync {
    /// Stores the book's versions that are not stored yet, all or none (see the module's rules).
    /// Answers how many were added.
    async fn add_book_versions(&self, book: &PriceBook) -> Result<u64, RatingStoreError>;
    /// Every book with all its versions, versions by `effectiveFrom`.
    async fn price_books(&self) -> Result<Vec<PriceBook>, StoreError>;
    /// Stores an assignment; one with the same subscription (or default) and hour is replaced.
    async fn set_assignment(&self, assignment: &Assignment) -> Result<(), StoreError>;
    async fn assignments(&self) -> Result<Vec<Assignment>, StoreError>;
}

/// Statements, draft and final.
#[async_trait]
pub trait StatementStore: Send + Sync {
    /// Stores a draft (replacing the draft before it) or a final statement; refuses to touch a
    /// final one.
    async fn save_statement(&self, statement: &Statement) -> Result<(), RatingStoreError>;
    async fn statement(
        &self,
        billing_subscription_id: &str,
        month: Month,
    ) -> Result<Option<Statement>, StoreError>;
    /// Every statement of `month`, or of every month, by billing subscription then month.
    async fn statements(&self, month: Option<Month>) -> Result<Vec<Statement>, StoreError>;
    /// One page of `month`'s statements: at most `limit`, of the billing subscriptions after
    /// `after` (from the first when `None`), by billing subscription. Ids compare as bytes (every
    /// store keys them in a binary collation), so walking the pages gives [`Self::statements`] of the
    /// month, each once, while only a page is read.
    async fn statements_page(
        &self,
        month: Month,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Statement>, StoreError>;
    /// A billing subscription's final statements (what corrections are worked out against).
    async fn final_statements(&self, billing_subscription_id: &str) -> Result<Vec<Statement>, StoreError>;
    /// Every scheduled verify of `stamp` whose range overlaps `range`, oldest first: the evidence a
    /// month's statement is finalised on (the status keeps only the latest).
    async fn verify_history(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<VerifyRecord>, StoreError>;
}

/// A store that keeps both: what the statement service and the CLI take.
pub trait RatingStore: PriceBookStore + StatementStore {}

impl<T: PriceBookStore + StatementStore> RatingStore for T {}
