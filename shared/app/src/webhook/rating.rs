//! `/price-books`, `/assignments`, `/statements`, `/margin` and `/focus`: rating over HTTP, as
//! `azs-usage price-book`, `statement` and `margin` do it from the shell, through the same
//! [`StatementService`] and store. Handlers translate; the service and the core do the work.
//!
//! Listings page like every listing (`limit`, `cursor`); so do `/focus` and `/margin`, by billing
//! subscription and with smaller pages, so that no answer outgrows a platform's limits (Lambda's
//! 6 MB, API Gateway's 29 s) whatever the number of customers. A book whose content breaks a rule answers
//! 422 naming each field (`versions[0].meters[1].price.unitPrice`); a version stored with other
//! content or a currency changed answers 409 (a stored version is never edited); a statement that is
//! not proven complete answers 409 with its blockers, kept as a draft. A database without a rating
//! store (only SQLite has one so far) answers 404 on these paths, saying so.

use super::App;
use super::accept::negotiate;
use super::body::{JsonBody, path_params};
use super::page::PageRequest;
use super::problem::Problem;
use crate::rating::{Finalised, NotFinal, StatementService};
use crate::registrar::RegistrationError;
use crate::statement_pass::Covered;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, VARY, X_CONTENT_TYPE_OPTIONS};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use azs_core::mapping::{BILLING_SUBSCRIPTION_ID_RULE, is_billing_subscription_id};
use azs_core::rating::focus::{DEFAULT_BILLING_ACCOUNT_ID, DEFAULT_ISSUER, FocusIssuer, focus_csv_within};
use azs_core::rating::html::statement_html;
use azs_core::rating::margin::{MarginError, StatementMargin};
use azs_core::rating::ports::RatingStoreError;
use azs_core::rating::rerate::Rerate;
use azs_core::rating::statement_csv::statement_csv;
use azs_core::rating::{Assignment, Month, PriceBook, Statement};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

const CONFLICT: &str = "tag:azs-usage,2026:problem:price-book-conflict";
const NOT_COMPLETE: &str = "tag:azs-usage,2026:problem:statement-not-complete";
const NOT_FOUND: &str = "tag:azs-usage,2026:problem:rating-not-found";
const NOT_KEPT: &str = "tag:azs-usage,2026:problem:rating-not-kept";

fn service(app: &App) -> Result<&Arc<StatementService>, Problem> {
    app.statements.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            NOT_KEPT,
            "No rating in this database",
            "Price books and statements are kept in the SQLite store only, so far; this database has none.",
        )
    })
}

/// A store failure: the database is unavailable (503, the reason logged, not shown).
fn unavailable(e: impl std::fmt::Display) -> Problem {
    Problem::from_registration(RegistrationError::Unavailable(e.to_string()), "")
}

fn not_found(detail: String) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, NOT_FOUND, "Not found", detail)
}

pub async fn list_books(State(app): State<App>, page: PageRequest) -> Result<Response, Problem> {
    let books = service(&app)?.rating.price_books().await.map_err(unavailable)?;
    Ok(page.answer(books, |b| b.id.clone()))
}

/// What importing a book did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Imported {
    pub id: String,
    pub versions_added: u64,
}

pub async fn import_book(
    State(app): State<App>,
    JsonBody(book): JsonBody<PriceBook>,
) -> Result<Response, Problem> {
    // Well-formed JSON that breaks a book's rules is a 422 naming each field: the document's schema
    // says what a book looks like, the rules (one currency, ascending versions, bounded prices) are ours.
    let book = book.validated().map_err(Problem::unusable_fields)?;
    let added = service(&app)?.rating.add_book_versions(&book).await.map_err(|e| match e {
        RatingStoreError::Store(e) => unavailable(e),
        other => Problem::new(
            StatusCode::CONFLICT,
            CONFLICT,
            "The price book conflicts with the stored one",
            other.to_string(),
        ),
    })?;
    let status = if added > 0 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Imported { id: book.id, versions_added: added })).into_response())
}

pub async fn show_book(State(app): State<App>, BookPath(id): BookPath) -> Result<Json<PriceBook>, Problem> {
    let books = service(&app)?.rating.price_books().await.map_err(unavailable)?;
    books
        .into_iter()
        .find(|b| b.id == id)
        .map(Json)
        .ok_or_else(|| not_found(format!("No price book {id:?}.")))
}

/// What differs between two versions of a book, as `azs-usage price-book diff` prints it.
#[derive(Debug, Serialize)]
pub struct BookDiff {
    pub lines: Vec<String>,
}

pub async fn diff_book(
    State(app): State<App>,
    BookPath(id): BookPath,
    Versions(from, to): Versions,
) -> Result<Json<BookDiff>, Problem> {
    let books = service(&app)?.rating.price_books().await.map_err(unavailable)?;
    let book =
        books.iter().find(|b| b.id == id).ok_or_else(|| not_found(format!("No price book {id:?}.")))?;
    let version = |n: u32| {
        book.versions
            .iter()
            .find(|v| v.version == n)
            .ok_or_else(|| not_found(format!("Price book {id:?} has no version {n}.")))
    };
    Ok(Json(BookDiff { lines: crate::rating::book_diff(version(from)?, version(to)?) }))
}

pub async fn list_assignments(State(app): State<App>, page: PageRequest) -> Result<Response, Problem> {
    let assignments = service(&app)?.rating.assignments().await.map_err(unavailable)?;
    // The default (no subscription) sorts first; then by subscription and hour.
    Ok(page.answer(assignments, |a| {
        format!(
            "{}\u{1}{}",
            a.billing_subscription_id.as_deref().unwrap_or(""),
            a.effective_from.to_rfc3339()
        )
    }))
}

pub async fn set_assignment(
    State(app): State<App>,
    JsonBody(assignment): JsonBody<Assignment>,
) -> Result<Json<Assignment>, Problem> {
    let assignment = assignment.validated().map_err(Problem::unusable_fields)?;
    let service = service(&app)?;
    let books = service.rating.price_books().await.map_err(unavailable)?;
    if !books.iter().any(|b| b.id == assignment.book_id) {
        let mut errors = azs_core::ValidationErrors::default();
        errors.push("bookId", "must name an imported price book");
        return Err(Problem::unusable_fields(errors));
    }
    service.rating.set_assignment(&assignment).await.map_err(unavailable)?;
    Ok(Json(assignment))
}

pub async fn list_statements(
    State(app): State<App>,
    MonthQuery(month): MonthQuery,
    page: PageRequest,
) -> Result<Response, Problem> {
    let statements = service(&app)?.rating.statements(month).await.map_err(unavailable)?;
    Ok(page.answer(statements, |s| format!("{}\u{1}{}", s.billing_subscription_id, s.month)))
}

/// The statement as it stands: the final one, or a fresh draft (kept); as JSON, CSV or HTML, as
/// the `Accept` header prefers (see `accept.rs` for why not a query parameter).
pub async fn show_statement(
    State(app): State<App>,
    StatementPath(subscription, month): StatementPath,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let format = negotiate(&headers, &[JSON, CSV, HTML])?;
    let service = service(&app)?;
    let statement = current(service, &subscription, month).await?;
    let mut res = match format {
        CSV => text(CSV, statement_csv(&statement)),
        HTML => {
            let mut res = text(HTML, statement_html(&statement));
            // The page is ours alone: no script, nothing fetched; only its own inline style.
            res.headers_mut().insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            res
        }
        _ => Json(statement).into_response(),
    };
    res.headers_mut().insert(VARY, HeaderValue::from_static("accept"));
    Ok(res)
}

const JSON: &str = "application/json";
const CSV: &str = "text/csv";
const HTML: &str = "text/html";

/// A text answer of `media` type (UTF-8), never sniffed as another.
fn text(media: &'static str, body: String) -> Response {
    let content_type = match media {
        CSV => "text/csv; charset=utf-8",
        _ => "text/html; charset=utf-8",
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

/// The operator's view of one statement: revenue, cost (the cost book) and margin per meter and
/// stamp.
pub async fn statement_margin(
    State(app): State<App>,
    StatementPath(subscription, month): StatementPath,
) -> Result<Json<StatementMargin>, Problem> {
    let service = service(&app)?;
    let statement = current(service, &subscription, month).await?;
    crate::margin::margin_of_statement(service, &statement).await.map(Json).map_err(margin_problem)
}

/// Billing subscriptions per `/margin` page: each one's statement is rebuilt in the request, and
/// the statement pass builds about 110 a second on one core, so the default page (about 1 s there)
/// stays inside API Gateway's 29 s on the smallest Lambda (128 MB: about a fourteenth of a vCPU)
/// and the largest (about 9 s) on a full core.
pub const MARGIN_DEFAULT_LIMIT: usize = 100;
pub const MARGIN_MAX_LIMIT: usize = 1000;

/// A page of `/margin`: billing subscriptions, in their order.
pub type MarginPage = PageRequest<MARGIN_DEFAULT_LIMIT, MARGIN_MAX_LIMIT>;

/// The month's margin over a page of billing subscriptions, as `azs-usage margin` shows the whole
/// month; the body names the first and last it counted, `Link` the next page.
pub async fn month_margin(
    State(app): State<App>,
    RequiredMonth(month): RequiredMonth,
    page: MarginPage,
) -> Result<Response, Problem> {
    let service = service(&app)?;
    let covered = Covered::Page { after: page.after_billing_subscription(), limit: page.limit() };
    let margin = crate::margin::month_margin(service, month, &covered, chrono::Utc::now())
        .await
        .map_err(margin_problem)?;
    let next = margin.more.then_some(margin.last_billing_subscription_id.as_deref()).flatten();
    Ok(page.with_next(Json(&margin).into_response(), next))
}

/// No cost book, or one in another currency than a statement: a 422 naming `month` (what cannot
/// be costed) and the rule; anything else is the store's failure.
fn margin_problem(e: anyhow::Error) -> Problem {
    match e.downcast_ref::<MarginError>() {
        // "no cost book: import the prices Microsoft charges you as price book \"operator-cost\" (...)"
        Some(e) => unusable("month", &format!("cannot be costed: {e}")),
        None => unavailable(format!("{e:#}")),
    }
}

fn unusable(field: &str, rule: &str) -> Problem {
    let mut errors = azs_core::ValidationErrors::default();
    errors.push(field, rule);
    Problem::unusable_fields(errors)
}

/// What a price correction of a final month answered.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rerated {
    /// The difference the books as they are now make, per meter, stamp and price.
    pub rerate: Rerate,
    /// With `confirm=true` and something to correct: the next open statement carrying the
    /// correction lines; else null (nothing was written).
    pub statement: Option<Statement>,
}

/// A price correction of a final month: a what-if (nothing written) unless `confirm=true`, which
/// writes the difference as correction lines onto the next open statement.
pub async fn rerate_statement(
    State(app): State<App>,
    StatementPath(subscription, month): StatementPath,
    Confirm(confirm): Confirm,
) -> Result<Json<Rerated>, Problem> {
    let service = service(&app)?;
    mapped(service, &subscription).await?;
    let (rerate, statement) =
        service.rerate(&subscription, month, confirm, chrono::Utc::now()).await.map_err(|e| {
            if e.downcast_ref::<NotFinal>().is_some() {
                unusable(
                    "month",
                    "must be a month whose statement is final: a draft is priced with the books as they are whenever it is shown",
                )
            } else {
                unavailable(format!("{e:#}"))
            }
        })?;
    Ok(Json(Rerated { rerate, statement }))
}

/// Billing subscriptions per `/focus` page. A FOCUS row takes about 700 bytes (697 measured for a
/// VM-hours line by `the_focus_export_pages_by_billing_subscription_…` in `tests/it/rating_webhook.rs`),
/// one row per line, fee and tax: a default page of typical statements (4 lines, a fee, a tax) is
/// about 0.4 MB, the largest about 2 MB; statements with many more lines end a page early at
/// [`FOCUS_PAGE_BYTES`].
pub const FOCUS_DEFAULT_LIMIT: usize = 100;
pub const FOCUS_MAX_LIMIT: usize = 500;

/// Most bytes of a `/focus` page's CSV, whatever its statements hold: a page ends before the
/// statement that would pass it (one statement alone is still answered whole, so a page always
/// moves on). Lambda's 6 MB counts the whole answer: 4 MiB leaves room for the headers, and stays
/// under it even base64-encoded (5.6 MB).
pub const FOCUS_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// A page of `/focus`: billing subscriptions, in their order.
pub type FocusPage = PageRequest<FOCUS_DEFAULT_LIMIT, FOCUS_MAX_LIMIT>;

/// The stored statements of a month as FOCUS 1.2 CSV, as `azs-usage statement focus` writes them,
/// a page of billing subscriptions at a time: each page is a whole CSV (its header row, then its
/// statements' rows), so the pages' data rows, in order, are the month's.
pub async fn focus(
    State(app): State<App>,
    RequiredMonth(month): RequiredMonth,
    Issuer(issuer): Issuer,
    page: FocusPage,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    negotiate(&headers, &[CSV])?;
    let after = page.after_billing_subscription();
    let statements = service(&app)?
        .rating
        .statements_page(month, after.as_deref(), page.limit() + 1)
        .await
        .map_err(unavailable)?;
    let (csv, held) = focus_csv_within(
        &statements[..statements.len().min(page.limit())],
        &issuer,
        &crate::rating::meter_catalog(),
        FOCUS_PAGE_BYTES,
    );
    // More follow when the store had more than the page, or the budget cut the page short.
    let more = held < statements.len();
    let next = more.then(|| statements[..held].last().map(|s| s.billing_subscription_id.as_str())).flatten();
    Ok(page.with_next(text(CSV, csv), next))
}

/// Makes the statement final when it is proven complete (200); else 409 with why, the draft kept.
pub async fn finalize_statement(
    State(app): State<App>,
    StatementPath(subscription, month): StatementPath,
) -> Result<Json<Statement>, Problem> {
    let service = service(&app)?;
    mapped(service, &subscription).await?;
    match service.finalize(&subscription, month, chrono::Utc::now()).await {
        Ok(Finalised::Final(statement)) => Ok(Json(statement)),
        Ok(Finalised::Blocked(_, not_complete)) => {
            let blockers: Vec<String> = not_complete.blockers.iter().map(ToString::to_string).collect();
            Err(Problem::new(
                StatusCode::CONFLICT,
                NOT_COMPLETE,
                "The statement is not proven complete",
                not_complete.to_string(),
            )
            .with_member("blockers", json!(blockers)))
        }
        Err(e) => Err(unavailable(format!("{e:#}"))),
    }
}

/// The statement as it stands now (the final one, or a fresh draft, kept) of a mapped billing
/// subscription.
async fn current(service: &StatementService, subscription: &str, month: Month) -> Result<Statement, Problem> {
    mapped(service, subscription).await?;
    service.refresh(subscription, month, chrono::Utc::now()).await.map_err(|e| unavailable(format!("{e:#}")))
}

/// A statement exists for a billing subscription that some tenant subscription is mapped to (a typo
/// must not become a statement for a customer that does not exist).
async fn mapped(service: &StatementService, subscription: &str) -> Result<(), Problem> {
    let mappings = service.store.list_mappings(None).await.map_err(unavailable)?;
    if mappings.iter().any(|m| m.billing_subscription_id == subscription) {
        Ok(())
    } else {
        Err(not_found(format!("No tenant subscription is mapped to billing subscription {subscription:?}.")))
    }
}

/// The `{bookId}` of `/price-books/{bookId}`.
pub struct BookPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BookPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let mut params = path_params(parts).await?;
        params
            .remove("book_id")
            .map(BookPath)
            .ok_or_else(|| Problem::plain(StatusCode::NOT_FOUND, "No resource at this path."))
    }
}

/// `{billingSubscriptionId}/{month}` of `/statements/...`, each held to its rule.
pub struct StatementPath(pub String, pub Month);

impl<S: Send + Sync> FromRequestParts<S> for StatementPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let mut params = path_params(parts).await?;
        let subscription = params.remove("billing_subscription_id").unwrap_or_default();
        if !is_billing_subscription_id(&subscription) {
            return Err(Problem::invalid_field("billingSubscriptionId", BILLING_SUBSCRIPTION_ID_RULE));
        }
        let month = params.remove("month").unwrap_or_default();
        let month = month
            .parse::<Month>()
            .map_err(|_| Problem::invalid_field("month", "must be a month as YYYY-MM"))?;
        Ok(StatementPath(subscription, month))
    }
}

/// `?from=N&to=M`: the two versions to compare, each required once.
pub struct Versions(pub u32, pub u32);

impl<S: Send + Sync> FromRequestParts<S> for Versions {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let [from, to] = query_once(parts, ["from", "to"])?;
        let version = |field: &str, value: Option<String>| {
            let value = value
                .ok_or_else(|| Problem::invalid_field(field, "is required: a version number of the book"))?;
            value
                .parse::<u32>()
                .map_err(|_| Problem::invalid_field(field, "must be a version number (a whole number)"))
        };
        Ok(Versions(version("from", from)?, version("to", to)?))
    }
}

/// `?month=YYYY-MM`, at most once.
pub struct MonthQuery(pub Option<Month>);

impl<S: Send + Sync> FromRequestParts<S> for MonthQuery {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let [month] = query_once(parts, ["month"])?;
        let month = month
            .map(|m| {
                m.parse::<Month>().map_err(|_| Problem::invalid_field("month", "must be a month as YYYY-MM"))
            })
            .transpose()?;
        Ok(MonthQuery(month))
    }
}

/// `?month=YYYY-MM`, required.
pub struct RequiredMonth(pub Month);

impl<S: Send + Sync> FromRequestParts<S> for RequiredMonth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        MonthQuery::from_request_parts(parts, state)
            .await?
            .0
            .map(RequiredMonth)
            .ok_or_else(|| Problem::invalid_field("month", "is required: a month as YYYY-MM"))
    }
}

/// `?confirm=true|false` (default false), at most once.
pub struct Confirm(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Confirm {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        match query_once(parts, ["confirm"])? {
            [None] => Ok(Confirm(false)),
            [Some(v)] if v == "false" => Ok(Confirm(false)),
            [Some(v)] if v == "true" => Ok(Confirm(true)),
            [Some(_)] => Err(Problem::invalid_field("confirm", "must be true or false")),
        }
    }
}

/// `?billingAccountId=&issuer=` of the FOCUS export, each at most once, 1 to 128 characters
/// without control characters; the CLI's defaults when absent.
pub struct Issuer(pub FocusIssuer);

impl<S: Send + Sync> FromRequestParts<S> for Issuer {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let [account, issuer] = query_once(parts, ["billingAccountId", "issuer"])?;
        let name = |field: &str, value: Option<String>, default: &str| match value {
            None => Ok(default.to_owned()),
            Some(v) if v.is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control) => {
                Err(Problem::invalid_field(field, "must be 1 to 128 characters, no control characters"))
            }
            Some(v) => Ok(v),
        };
        Ok(Issuer(FocusIssuer::new(
            name("billingAccountId", account, DEFAULT_BILLING_ACCOUNT_ID)?,
            name("issuer", issuer, DEFAULT_ISSUER)?,
        )))
    }
}

/// The query parameters `names`, each at most once (a repeat is a 400 naming it); others ignored.
fn query_once<const N: usize>(parts: &Parts, names: [&str; N]) -> Result<[Option<String>; N], Problem> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    let query = parts.uri.query().unwrap_or_default();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if let Some(i) = names.iter().position(|n| *n == name) {
            if values[i].is_some() {
                return Err(Problem::invalid_field(names[i], "must be given at most once"));
            }
            values[i] = Some(value.into_owned());
        }
    }
    Ok(values)
}
