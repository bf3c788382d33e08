//! One stamp's run, from taking its lease to recording its outcome, and its session: the credential
//! from the secret store (only a document bound to this stamp is sent), the login endpoint pinned by
//! discovery before the credential goes anywhere, and the connection.

use super::{COLLECTOR, CollectError, CollectErrorKind, Collector, Progress, StampSummary};
use crate::audit::{Actor, Attribution};
use crate::ports::StampSession;
use crate::stamp::{Credential, Stamp, StampId};
use crate::status::{RunOutcome, RunRecord};
use crate::window::ReportedWindow;
use chrono::Utc;
use tokio::time::Instant;
use tracing::{info, warn};

impl Collector {
    /// Collects one stamp from its watermark; never returns an error: failures go into the summary and
    /// the stamp's status.
    pub(super) async fn collect_stamp(
        &self,
        stamp: &Stamp,
        owner: &str,
        deadline: Option<Instant>,
        progress: &dyn Progress,
    ) -> StampSummary {
        let mut summary = StampSummary::starting(stamp.id.clone(), stamp.name.clone());
        match self.leases.try_acquire(&stamp.id, owner, self.settings.lease_ttl).await {
            Ok(true) => {}
            Ok(false) => {
                info!("another run holds this stamp's lease; skipping it");
                summary.outcome = RunOutcome::Skipped;
                summary.watermark =
                    self.statuses.get_status(&stamp.id).await.ok().flatten().map(|s| s.watermark);
                return summary;
            }
            Err(e) => {
                summary.error = Some(error_text(stamp, None, e.into()));
                return summary;
            }
        }

        let started = Utc::now();
        let result = match self.statuses.record_run_started(&stamp.id, started).await {
            Ok(()) => self.collect_windows(stamp, owner, deadline, progress, &mut summary).await,
            Err(e) => Err(CollectError { stamp: stamp.id.clone(), window: None, kind: e.into() }),
        };
        summary.outcome = match &result {
            Ok(outcome) => *outcome,
            Err(e) => {
                warn!(window = ?e.window.map(|w| w.to_string()), error = %e, "stamp failed");
                summary.error = Some(e.to_string());
                summary.budget_ran_out = matches!(e.kind, CollectErrorKind::TimeBudget { .. });
                RunOutcome::Failed
            }
        };
        // Only a stamp brought up to date is verified: its trailing hours are all collected.
        if summary.outcome == RunOutcome::Succeeded {
            summary.drift = self.scheduled_verify(stamp, deadline).await;
        }
        let record = RunRecord {
            outcome: summary.outcome,
            finished: Utc::now(),
            rows_written: summary.rows_written,
            unmapped_rows: summary.unmapped_rows,
            duplicates: summary.duplicates,
            last_error: summary.error.clone(),
        };
        if let Err(e) = self.statuses.record_run_finished(&stamp.id, &record).await {
            warn!(error = %e, "could not record the run's status");
            summary.error.get_or_insert_with(|| format!("stamp {}: recording status: {e}", stamp.id));
        }
        summary.watermark = self.statuses.get_status(&stamp.id).await.ok().flatten().map(|s| s.watermark);
        if let Err(e) = self.leases.release(&stamp.id, owner).await {
            // The lease expires on its own; the next run only waits for it.
            warn!(error = %e, "could not release the lease");
        }
        info!(outcome = %summary.outcome, windows = summary.windows_committed, rows = summary.rows_written, "stamp done");
        summary
    }

    pub(super) async fn open_session(
        &self,
        stamp: &Stamp,
    ) -> Result<Box<dyn StampSession>, CollectErrorKind> {
        let pinned;
        let stamp = if stamp.connection.is_pinned() {
            stamp
        } else {
            pinned = self.pin(stamp).await?;
            &pinned
        };
        let secret = self
            .secrets
            .get_secret(&stamp.credential_secret_name)
            .await
            .map_err(|e| CollectErrorKind::Credential(e.to_string()))?
            .ok_or_else(|| {
                CollectErrorKind::Credential(format!(
                    "secret {:?} is not in the secret store",
                    stamp.credential_secret_name
                ))
            })?;
        // A document bound to another stamp is never sent (unbound ones predate binding: see
        // `Credential::bound_endpoint`).
        if !Credential::document_fits(&secret, &stamp.connection.admin_arm_endpoint, true) {
            return Err(CollectErrorKind::Credential(format!(
                "secret {:?} holds a credential provisioned for another adminArmEndpoint; nothing was sent",
                stamp.credential_secret_name
            )));
        }
        let credential = Credential::from_secret(&stamp.credential_secret_name, &secret)
            .map_err(|e| CollectErrorKind::Credential(e.to_string()))?;
        Ok(self.source.connect(stamp, &credential).await?)
    }

    /// A stamp stored before its login endpoint was known (registered without verification while it
    /// could not be reached, or before registration pinned it) is pinned on first use, by discovery
    /// alone (no credential is sent), before its credential goes anywhere: from then on its metadata
    /// cannot move the login host. Written only if nobody changed the stamp meanwhile.
    async fn pin(&self, stamp: &Stamp) -> Result<Stamp, CollectErrorKind> {
        let endpoints = self.source.discover(stamp).await?;
        let mut pinned = stamp.clone();
        pinned.connection.pin(&endpoints.login_endpoint, &endpoints.audience);
        if self.stamps.get_stamp(&stamp.id).await?.as_ref() == Some(stamp) {
            // A change like any other: on record, under the collector's name.
            let by = Attribution::now(Actor::new(COLLECTOR));
            self.stamps.change_stamp(&pinned, false, &by).await?;
            info!(login_endpoint = %endpoints.login_endpoint, "login endpoint pinned on first use");
        }
        Ok(pinned)
    }

    /// Extends the run's lease on the stamp; an error when another run has taken it.
    pub(super) async fn renew_lease(&self, stamp: &StampId, owner: &str) -> Result<(), CollectErrorKind> {
        match self.leases.renew(stamp, owner, self.settings.lease_ttl).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(CollectErrorKind::LeaseLost),
            Err(e) => Err(e.into()),
        }
    }
}

fn error_text(stamp: &Stamp, window: Option<ReportedWindow>, kind: CollectErrorKind) -> String {
    CollectError { stamp: stamp.id.clone(), window, kind }.to_string()
}
