//! The behaviour every azs-usage store must show, written once and run against each store.
//!
//! A store crate runs it from its own tests:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn the_store_conforms() {
//!     let dir = tempfile::tempdir().unwrap();
//!     let next = std::sync::atomic::AtomicUsize::new(0);
//!     let outcomes = azs_store_conformance::run_all(|| {
//!         let file = dir.path().join(format!("case-{}.db", next.fetch_add(1, Ordering::Relaxed)));
//!         async move { Arc::new(SqliteStore::open(file).unwrap()) }
//!     })
//!     .await;
//!     azs_store_conformance::assert_all_passed(&outcomes);
//! }
//! ```
//!
//! `make` is called once per case. It may hand out a fresh database each time or the same store every
//! time: every case registers its own stamps (random ids, unique endpoints) and only looks at those, so
//! cases never see each other's data. Each case is a function named as the behaviour it specifies; a
//! failed assertion fails that case only, and [`run_all`] reports every case by name.

mod cases;
pub mod fixtures;
pub mod rating;

use azs_core::ports::Store;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one case may take before it counts as failed (a store that hangs must not hang the suite).
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One specified behaviour.
pub struct Case {
    pub name: &'static str,
    pub run: fn(Arc<dyn Store>) -> CaseFuture,
}

/// How one case went against one store.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    /// The failed assertion's message, or why the case could not finish.
    pub result: Result<(), String>,
    pub elapsed: Duration,
}

/// Every case, in the order [`run_all`] runs them.
pub fn cases() -> Vec<Case> {
    cases::all()
}

/// Runs every case against a store from `make` (called once per case) and reports each.
pub async fn run_all<S, F, Fut>(make: F) -> Vec<Outcome>
where
    S: Store + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    let mut outcomes = Vec::new();
    for case in cases() {
        let store: Arc<dyn Store> = make().await;
        outcomes.push(run_case(&case, store).await);
    }
    outcomes
}

/// Runs one case on its own task, so that a failed assertion (a panic) becomes that case's `Err`.
pub async fn run_case(case: &Case, store: Arc<dyn Store>) -> Outcome {
    run_named(case.name, (case.run)(store)).await
}

/// Runs one case's future on its own task and reports it under `name`.
pub async fn run_named(name: &'static str, case: CaseFuture) -> Outcome {
    let started = Instant::now();
    let mut task = tokio::spawn(case);
    let result = match tokio::time::timeout(CASE_TIMEOUT, &mut task).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.is_panic() => Err(panic_message(e.into_panic())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            task.abort();
            Err(format!("did not finish within {CASE_TIMEOUT:?}"))
        }
    };
    Outcome { name, result, elapsed: started.elapsed() }
}

/// Prints one line per case and panics naming every case that failed.
pub fn assert_all_passed(outcomes: &[Outcome]) {
    for o in outcomes {
        match &o.result {
            Ok(()) => println!("ok      {} ({} ms)", o.name, o.elapsed.as_millis()),
            Err(e) => println!("FAILED  {}: {e}", o.name),
        }
    }
    let failed: Vec<String> =
        outcomes.iter().filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.name))).collect();
    assert!(
        failed.is_empty(),
        "{} of {} store cases failed:\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "panicked".to_owned(),
        },
    }
}
