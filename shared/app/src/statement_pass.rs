//! The statement pass: every mapped billing subscription's statements of a month or two, as the
//! timer keeps them ([`crate::job::keep_statements`]) and the margin counts them
//! ([`crate::margin::month_margin`]). What [`StatementService::refresh`] and `finalize` do for one,
//! done for all without reading anything twice:
//!
//! - the shared inputs (books, assignments, mappings, statuses, verify history) once per pass;
//! - per billing subscription, its final statements, its statements of the pass's months and its
//!   rows since the earliest month needs them (one indexed read, [`UsageLedger::billing_rows`]),
//!   which serves every month of the pass: the rows of the next [`READ_AHEAD`] subscriptions are
//!   read while this one's statements are built, and dropped once they are.
//!
//! Memory is a few subscriptions' rows at a time, never the month's, in buffers that take turns: a
//! subscription's rows are read into the buffer of one already built, so a pass does not map, fault
//! in and unmap a fresh buffer of some hundred KB per subscription. The statements are the
//! ones the one-at-a-time path gives (`tests/it/statement_pass.rs` holds them equal).
//!
//! A pass covers every mapped billing subscription, or a page of them ([`Covered::Page`]: the
//! webhook's `/margin`, so that one request stays inside a gateway's timeout).
//!
//! [`UsageLedger::billing_rows`]: azs_core::ports::UsageLedger::billing_rows

use crate::rating::{Snapshot, StatementService, rows_from};
use anyhow::{Result, anyhow};
use azs_core::ports::Store;
use azs_core::rating::ports::RatingStore;
use azs_core::rating::rerate::carry_rerates;
use azs_core::rating::statement::NotComplete;
use azs_core::rating::{Month, RatableRow, Statement, finalize};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Subscriptions whose inputs are being read while one's statements are built. Reading costs more
/// than building, so with one read ahead the builder of a 10,000-subscription pass waited 23-93 s
/// for its rows, a core often idle; with two it waited 7-16 s (`azs-rating-bench pass`, 2 cores).
const READ_AHEAD: usize = 2;

/// One month of a pass, and whether its statements are to be made final when proven complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassMonth {
    pub month: Month,
    pub finalise: bool,
}

/// What became of one statement in a pass.
#[derive(Debug)]
pub enum Kept {
    /// It was final before the pass and was left untouched.
    AlreadyFinal(Statement),
    /// A fresh draft, kept (its month is not being finalised).
    Draft(Statement),
    /// Made final by this pass.
    Finalised(Statement),
    /// Kept as a draft: not proven complete, and why.
    Blocked(Statement, NotComplete),
    /// Not kept; the next pass tries again.
    Failed(anyhow::Error),
}

/// Which mapped billing subscriptions a pass covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Covered {
    /// Every one (the timer, the CLI's month).
    Every,
    /// At most `limit` of them after `after` (from the first when `None`), in billing subscription
    /// order (as bytes, like the stores' keys).
    Page { after: Option<String>, limit: usize },
}

impl Covered {
    /// The billing subscriptions of `mapped` covered, in order, and whether more follow them.
    fn select<'a, V>(&self, mapped: &'a BTreeMap<String, V>) -> (Vec<&'a String>, bool) {
        match self {
            Covered::Every => (mapped.keys().collect(), false),
            Covered::Page { after, limit } => {
                let after = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let mut page: Vec<&String> = mapped
                    .range::<str, _>((after, Bound::Unbounded))
                    .map(|(k, _)| k)
                    .take(limit + 1)
                    .collect();
                let more = page.len() > *limit;
                page.truncate(*limit);
                (page, more)
            }
        }
    }
}

/// How a pass ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassEnd {
    /// Statements not started because the deadline came first.
    pub deferred: usize,
    /// The first and last billing subscription the pass covers (`None` when none); when `deferred`
    /// is not 0, the last ones were not reached.
    pub first: Option<String>,
    pub last: Option<String>,
    /// A page was asked for and mapped billing subscriptions follow its last.
    pub more: bool,
}

/// What a pass tells as it goes. Any `FnMut(&str, Month, Kept)` hears of the statements alone.
pub trait PassListener {
    /// What became of the statement of `billing_subscription_id` for `month`.
    fn kept(&mut self, billing_subscription_id: &str, month: Month, kept: Kept);
    /// The billing subscription's rows the pass read (reported from the earliest month's
    /// [`rows_from`] on, in reported order), once its statements are kept: for a listener that
    /// works out more from the same rows (the margin's cost) without reading them again.
    fn rows(&mut self, _billing_subscription_id: &str, _rows: &[RatableRow]) {}
}

impl<F: FnMut(&str, Month, Kept)> PassListener for F {
    fn kept(&mut self, billing_subscription_id: &str, month: Month, kept: Kept) {
        self(billing_subscription_id, month, kept);
    }
}

/// What one billing subscription's statements are built from, besides the snapshot.
struct Inputs {
    finals: Vec<Statement>,
    /// The stored statement of each month of the pass, in the pass's order.
    existing: Vec<Option<Statement>>,
    /// Its rows from the earliest month's [`rows_from`] on, in reported order.
    rows: Vec<RatableRow>,
}

/// Builds and keeps the statements of `months` for the mapped billing subscriptions `covered`, in
/// billing subscription order, each subscription's months in the order given; `listener` hears of
/// every one. Stops starting statements at `deadline` and says how many it left. Only reading the
/// shared inputs fails the pass; one statement's failure is handed to `listener` and the pass goes on.
pub async fn keep_all(
    service: &StatementService,
    months: &[PassMonth],
    covered: &Covered,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
    mut listener: impl PassListener,
) -> Result<PassEnd> {
    let plain: Vec<Month> = months.iter().map(|m| m.month).collect();
    let snapshot = Snapshot::read(service, &plain).await?;
    let (subscriptions, more) = covered.select(&snapshot.mapped);
    let covered_end = |deferred| PassEnd {
        deferred,
        first: subscriptions.first().map(|s| (*s).clone()),
        last: subscriptions.last().map(|s| (*s).clone()),
        more,
    };
    let mut builder = snapshot.builder();
    let mut pending = subscriptions.len() * months.len();
    // Buffers of subscriptions whose statements are built, for the next reads to reuse.
    let mut spares: Vec<Vec<RatableRow>> = Vec::new();
    let mut reading: VecDeque<JoinHandle<Result<Inputs>>> =
        subscriptions.iter().take(READ_AHEAD).map(|sub| prefetch(service, sub, &plain, Vec::new())).collect();
    for (i, sub) in subscriptions.iter().enumerate() {
        let fetching = reading.pop_front().expect("the subscription's inputs are being read");
        if deadline.is_some_and(|d| Instant::now() >= d) {
            fetching.abort();
            reading.iter().for_each(JoinHandle::abort);
            return Ok(covered_end(pending));
        }
        // Read the next subscriptions' inputs while this one's statements are built.
        if let Some(sub) = subscriptions.get(i + READ_AHEAD) {
            reading.push_back(prefetch(service, sub, &plain, spares.pop().unwrap_or_default()));
        }
        let inputs = match fetching.await {
            Ok(Ok(inputs)) => Ok(inputs),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(e) => Err(format!("reading its inputs ended abnormally: {e}")),
        };
        let mut inputs = match inputs {
            Ok(inputs) => inputs,
            Err(e) => {
                for m in months {
                    pending -= 1;
                    listener.kept(sub, m.month, Kept::Failed(anyhow!("{e}")));
                }
                continue;
            }
        };
        for (n, m) in months.iter().enumerate() {
            if n > 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                reading.iter().for_each(JoinHandle::abort);
                return Ok(covered_end(pending));
            }
            pending -= 1;
            let existing = inputs.existing[n].take();
            let kept = match existing {
                Some(s) if s.is_final() => Kept::AlreadyFinal(s),
                existing => {
                    let built = snapshot
                        .build(&mut builder, sub, m.month, &inputs.rows, &inputs.finals, now)
                        .map(|draft| carry_rerates(draft, existing.as_ref()));
                    match built {
                        Ok(draft) => keep(service.rating.as_ref(), draft, m.finalise, now).await,
                        Err(e) => Kept::Failed(e),
                    }
                }
            };
            // A month made final now counts for the months after it (late usage, tiers).
            if let Kept::Finalised(final_) = &kept {
                inputs.finals.push(final_.clone());
            }
            listener.kept(sub, m.month, kept);
        }
        listener.rows(sub, &inputs.rows);
        let mut spare = inputs.rows;
        spare.clear();
        spares.push(spare);
    }
    Ok(covered_end(0))
}

/// Saves `draft`, or its final when `finalise` and it is proven complete.
async fn keep(rating: &dyn RatingStore, draft: Statement, finalise: bool, now: DateTime<Utc>) -> Kept {
    let kept = if !finalise {
        Kept::Draft(draft)
    } else {
        match finalize(draft.clone(), now) {
            Ok(final_) => Kept::Finalised(final_),
            Err(not_complete) => Kept::Blocked(draft, not_complete),
        }
    };
    let statement = match &kept {
        Kept::Draft(s) | Kept::Finalised(s) | Kept::Blocked(s, _) => s,
        Kept::AlreadyFinal(_) | Kept::Failed(_) => return kept,
    };
    match rating.save_statement(statement).await {
        Ok(()) => kept,
        Err(e) => Kept::Failed(e.into()),
    }
}

/// Starts reading one billing subscription's inputs on its own task, its rows into `buffer`.
fn prefetch(
    service: &StatementService,
    sub: &str,
    months: &[Month],
    buffer: Vec<RatableRow>,
) -> JoinHandle<Result<Inputs>> {
    let (store, rating) = (service.store.clone(), service.rating.clone());
    let (sub, months) = (sub.to_owned(), months.to_vec());
    tokio::spawn(async move { inputs(store, rating, &sub, &months, buffer).await })
}

async fn inputs(
    store: Arc<dyn Store>,
    rating: Arc<dyn RatingStore>,
    sub: &str,
    months: &[Month],
    buffer: Vec<RatableRow>,
) -> Result<Inputs> {
    let finals = rating.final_statements(sub).await?;
    let mut existing = Vec::with_capacity(months.len());
    for month in months {
        existing.push(rating.statement(sub, *month).await?);
    }
    let from = months.iter().map(|m| rows_from(&finals, *m)).min().unwrap_or(DateTime::<Utc>::MAX_UTC);
    let rows = crate::rating::read_rows_into(store.as_ref(), sub, from, buffer).await?;
    Ok(Inputs { finals, existing, rows })
}
