//! A stamp whose collection task panics (a bug in a stamp client, say) must not look like success nor
//! hold the stamp hostage: the run reports it failed, its status says why, its lease is free for the
//! next run, the other stamps are collected in full, and the next run resumes where it stopped.
//!
//! Real SQLite file and file secret store; the stamp client is a stand-in that serves one row per
//! window, and panics for one chosen stamp.

use async_trait::async_trait;
use azs_core::collect::{CollectSettings, Collector, RunRequest, Silent};
use azs_core::ports::{
    DiscoveredEndpoints, ExportFilter, LeaseStore, PageRows, PullError, PullSummary, SecretStore,
    StampRegistry, StampSession, StatusReader, Store, UsageLedger, UsageSource,
};
use azs_core::secret::Secret;
use azs_core::stamp::{Credential, Stamp, StampId};
use azs_core::status::RunOutcome;
use azs_core::window::ReportedWindow;
use azs_secrets::FileSecretStore;
use azs_store_conformance::fixtures;
use azs_store_sqlite::SqliteStore;
use chrono::{DurationRound, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Serves one row per reported hour; panics when asked for `panicking`'s usage.
struct OneRowPerHour {
    panicking: Option<StampId>,
}

#[async_trait]
impl UsageSource for OneRowPerHour {
    async fn connect(&self, stamp: &Stamp, _: &Credential) -> Result<Box<dyn StampSession>, PullError> {
        Ok(Box::new(Session {
            panics: self.panicking.as_ref() == Some(&stamp.id),
            endpoints: self.discover(stamp).await?,
        }))
    }

    async fn discover(&self, _: &Stamp) -> Result<DiscoveredEndpoints, PullError> {
        Ok(DiscoveredEndpoints {
            audience: "https://management.example".into(),
            login_endpoint: "https://login.example".into(),
            is_adfs: false,
            token_endpoint: "https://login.example/token".into(),
        })
    }
}

struct Session {
    panics: bool,
    endpoints: DiscoveredEndpoints,
}

#[async_trait]
impl StampSession for Session {
    fn endpoints(&self) -> &DiscoveredEndpoints {
        &self.endpoints
    }

    async fn pull_pages(
        &self,
        window: ReportedWindow,
        _: &[String],
        on_page: &mut (dyn for<'p> FnMut(PageRows<'p>) + Send),
    ) -> Result<PullSummary, PullError> {
        assert!(!self.panics, "a bug in the stamp client");
        let hour = window.start.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let rows = vec![fixtures::vm_usage(fixtures::TENANT_A, "web-01", &hour, "1")];
        on_page(PageRows { rows, unreadable: Vec::new(), verbatim: &|_| None });
        Ok(PullSummary { pages: 1, rows: 1, retries: 0 })
    }
}

struct Setup {
    store: Arc<SqliteStore>,
    secrets: Arc<FileSecretStore>,
    healthy: Stamp,
    broken: Stamp,
    _dir: tempfile::TempDir,
}

const HOURS: i64 = 4;

async fn two_stamps() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("usage.db")).unwrap());
    let secrets = Arc::new(FileSecretStore::new(dir.path().join("secrets.json"), "azs-usage-stamp-"));
    let from = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(HOURS + 1);
    let mut stamps = Vec::new();
    for name in ["healthy", "broken"] {
        let mut stamp = fixtures::stamp(name);
        stamp.collect_from = from;
        store.insert_stamp(&stamp).await.unwrap();
        let credential = Credential::ApplicationSecret(Secret::new("client-secret"));
        secrets
            .put_secret(
                &stamp.credential_secret_name,
                &credential.to_secret_for(&stamp.connection.admin_arm_endpoint),
            )
            .await
            .unwrap();
        stamps.push(stamp);
    }
    let broken = stamps.pop().unwrap();
    let healthy = stamps.pop().unwrap();
    Setup { store, secrets, healthy, broken, _dir: dir }
}

fn collector(setup: &Setup, panicking: Option<&StampId>) -> Collector {
    let store: Arc<dyn Store> = setup.store.clone();
    let source = Arc::new(OneRowPerHour { panicking: panicking.cloned() });
    Collector::new(store, setup.secrets.clone(), source, CollectSettings::default())
}

/// The hours from collectFrom to the stamp's watermark: `HOURS`, or one more when the hour turned
/// during the test (the collector reads the clock itself).
async fn settled_hours(setup: &Setup, stamp: &StampId) -> u64 {
    let watermark = setup.store.get_status(stamp).await.unwrap().unwrap().watermark;
    let hours = (watermark - setup.healthy.collect_from).num_hours();
    assert!((HOURS..=HOURS + 1).contains(&hours), "{hours} settled hours");
    hours as u64
}

async fn stored_rows(store: &SqliteStore, stamp: &StampId) -> u64 {
    let filter = ExportFilter { stamps: vec![stamp.clone()], ..ExportFilter::default() };
    store.export_rows(&filter, &mut |_| Ok(())).await.unwrap()
}

#[tokio::test]
async fn a_panicking_stamp_is_reported_failed_recorded_released_and_resumed_by_the_next_run() {
    let setup = two_stamps().await;
    let (healthy, broken) = (&setup.healthy.id, &setup.broken.id);

    let summary = collector(&setup, Some(broken)).run(RunRequest::default(), Arc::new(Silent)).await.unwrap();

    let by_id = |id: &StampId| summary.stamps.iter().find(|s| &s.stamp_id == id).unwrap();
    assert_eq!(summary.stamps.len(), 2, "no stamp vanishes from the summary");
    assert_eq!(by_id(healthy).outcome, RunOutcome::Succeeded);
    let settled = settled_hours(&setup, healthy).await;
    assert_eq!(by_id(healthy).windows_committed, settled as usize);
    let failed = by_id(broken);
    assert_eq!(failed.outcome, RunOutcome::Failed);
    let error = failed.error.as_deref().unwrap();
    assert!(error.contains(broken.as_str()) && error.contains("ended abnormally"), "{error}");
    assert_eq!(summary.failed().map(|s| &s.stamp_id).collect::<Vec<_>>(), [broken]);

    let status = setup.store.get_status(broken).await.unwrap().unwrap();
    assert_eq!(status.outcome, RunOutcome::Failed, "not left 'running' until the next run");
    assert!(status.last_error.as_deref().unwrap().contains("ended abnormally"));
    assert_eq!(status.watermark, setup.broken.collect_from, "nothing of the broken stamp committed");
    assert_eq!(stored_rows(&setup.store, healthy).await, settled);
    assert_eq!(stored_rows(&setup.store, broken).await, 0);

    // The lease is free at once, not after its time to live.
    assert!(setup.store.try_acquire(broken, "another-run", Duration::from_secs(60)).await.unwrap());
    setup.store.release(broken, "another-run").await.unwrap();

    // Fixed: the next run collects the stamp from where it stood, and nothing of the healthy one twice.
    let summary = collector(&setup, None).run(RunRequest::default(), Arc::new(Silent)).await.unwrap();
    assert!(summary.failed().next().is_none(), "{summary:?}");
    let status = setup.store.get_status(broken).await.unwrap().unwrap();
    assert_eq!(status.outcome, RunOutcome::Succeeded);
    assert_eq!(status.watermark, setup.store.get_status(healthy).await.unwrap().unwrap().watermark);
    let settled = settled_hours(&setup, healthy).await;
    assert_eq!(stored_rows(&setup.store, broken).await, settled);
    assert_eq!(stored_rows(&setup.store, healthy).await, settled);
}
