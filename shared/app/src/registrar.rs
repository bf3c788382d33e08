//! Registering and managing stamps: the one code path behind `azs-usage stamp ...` and the webhook.
//!
//! Registration order, chosen so that nothing is ever half written:
//! 1. validate every field (all violations reported at once), parse the credential;
//! 2. with `verify`, run discovery, a token request and a one-hour usage query (nothing stored yet);
//! 3. refuse a duplicate (same admin ARM endpoint and admin subscription);
//! 4. write the credential to the secret store under a name derived from the new stamp id;
//! 5. insert the stamp; if that fails, delete the credential again before answering.
//!
//! The only window for an orphan is a crash (or a second failure) between 4 and 5's compensation: the
//! secret then sits under a stamp id no stamp has, never the reverse (a stamp without its credential).

use azs_core::StampConnection;
use azs_core::audit::{Actor, Attribution, AuditedStampRegistry};
use azs_core::error::ValidationErrors;
use azs_core::ports::{
    DiscoveredEndpoints, PullError, PullStage, SecretStore, StampDirectory, StatusReader, StoreError,
    UsageSource,
};
pub use azs_core::registration::StampPatch;
use azs_core::registration::{
    CredentialInput, CredentialSecretRules, StampRegistration, ValidChange, parse_guid, secret_name_key,
};
use azs_core::stamp::{Credential, Stamp, StampId};
use azs_core::status::ProcessingStatus;
use azs_core::window::{ReportedWindow, floor_hour};
use chrono::Utc;
use serde::Serialize;
use std::sync::Arc;

/// Why a registration or management call did not happen. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// A field breaks a rule of its own (format, length, required, one credential...).
    #[error("invalid input: {0}")]
    Invalid(ValidationErrors),
    /// Well-formed, but the service cannot act on it as things stand: a name already taken, a
    /// credential secret it may not use or cannot find, a certificate that does not parse, a host
    /// outside the allow-list, a `collectFrom` before a removed stamp's watermark.
    #[error("cannot be used: {0}")]
    Unusable(ValidationErrors),
    /// The stamp refused or could not be reached during verification.
    #[error("the stamp could not be verified: {0}")]
    Unverified(PullError),
    #[error("already registered as {0}")]
    Duplicate(StampId),
    #[error("stamp {0} is not registered")]
    NotFound(StampId),
    #[error("mapping for subscription {1} on stamp {0} does not exist")]
    MappingNotFound(StampId, String),
    /// The database or secret store failed; retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for RegistrationError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicateStamp(id) => RegistrationError::Duplicate(id),
            StoreError::UnknownStamp(id) => RegistrationError::NotFound(id),
            other => RegistrationError::Unavailable(other.to_string()),
        }
    }
}

fn secret_store(e: azs_core::ports::SecretStoreError) -> RegistrationError {
    RegistrationError::Unavailable(format!("secret store: {e}"))
}

fn unusable(field: &str, rule: &str) -> RegistrationError {
    let mut e = ValidationErrors::default();
    e.push(field, rule);
    RegistrationError::Unusable(e)
}

/// A stamp as the API and CLI show it: never its credential, always where it stands.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StampView {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub status: Option<ProcessingStatus>,
}

/// What `stamp test` / `POST /stamps/{id}/test` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionReport {
    pub endpoints: DiscoveredEndpoints,
    pub window: ReportedWindow,
    pub rows: u64,
    pub pages: u64,
    /// Set when the stored AD FS flag disagrees with what discovery found.
    pub warnings: Vec<String>,
}

/// How a registration is carried out.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisterOptions {
    /// Discovery, a token and a one-hour query before anything is stored.
    pub verify: bool,
    /// A `collectFrom` before a removed registration's watermark re-collects those hours.
    pub recollect: bool,
}

/// A registered stamp, and the already-stored range the caller asked to re-collect (to be
/// reprocessed: its hours are replaced, so nothing is stored twice).
#[derive(Debug, Clone)]
pub struct Registered {
    pub view: StampView,
    pub recollect: Option<ReportedWindow>,
}

/// Turns credential material (PEM or PFX) into a [`Credential`], checking it against the thumbprint.
pub type CredentialReader =
    fn(&CredentialInput, Option<&str>) -> Result<Option<Credential>, ValidationErrors>;

/// Why a named credential secret may not serve this stamp.
const BOUND_ELSEWHERE: &str = "names a credential document that is not provisioned for this stamp: its \
     adminArmEndpoint member must be this stamp's adminArmEndpoint";

/// Inline credentials read at once in this process (see `resolve_credential`).
static CREDENTIAL_READERS: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(1)));

/// How long reading an inline credential (parsing a PEM, opening a PFX) may take.
const CREDENTIAL_READ_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// How long registration without verification waits for discovery to pin the login endpoint.
const PIN_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Stamp administration: registering, changing, testing and removing stamps. Sees the stamp registry
/// (its audited writes: every change is recorded with `by`, the caller, in the change's transaction)
/// and the processing statuses (to show where each stamp stands), nothing of usage rows, leases or
/// mappings.
#[derive(Clone)]
pub struct Registrar {
    stamps: Arc<dyn AuditedStampRegistry>,
    statuses: Arc<dyn StatusReader>,
    secrets: Arc<dyn SecretStore>,
    source: Arc<dyn UsageSource>,
    read_credential: CredentialReader,
    credential_rules: CredentialSecretRules,
}

impl Registrar {
    pub fn new(
        stamps: Arc<dyn AuditedStampRegistry>,
        statuses: Arc<dyn StatusReader>,
        secrets: Arc<dyn SecretStore>,
        source: Arc<dyn UsageSource>,
        read_credential: CredentialReader,
        credential_rules: CredentialSecretRules,
    ) -> Self {
        Self { stamps, statuses, secrets, source, read_credential, credential_rules }
    }

    pub async fn register(
        &self,
        input: StampRegistration,
        verify: bool,
        by: &Actor,
    ) -> Result<StampView, RegistrationError> {
        Ok(self.register_with(input, RegisterOptions { verify, recollect: false }, by).await?.view)
    }

    /// Registers a stamp. A stamp that was removed before (same admin ARM endpoint and admin
    /// subscription) takes its old id back and resumes at its tombstone's watermark; a `collectFrom`
    /// before that watermark is refused unless `recollect`, and then the hours from `collectFrom` to
    /// the watermark are handed back to be reprocessed (replaced, never stored twice).
    pub async fn register_with(
        &self,
        input: StampRegistration,
        options: RegisterOptions,
        by: &Actor,
    ) -> Result<Registered, RegistrationError> {
        let now = Utc::now();
        let collect_from_given = input.collect_from.as_deref().is_some_and(|s| !s.trim().is_empty());
        let valid = input.validate(now).map_err(RegistrationError::Invalid)?;
        self.source.check_endpoints(&valid.connection).map_err(RegistrationError::Unusable)?;
        let tombstone = self.stamps.tombstone(&valid.connection).await?;
        let id = tombstone.as_ref().map_or_else(StampId::new_random, |t| t.stamp_id.clone());
        let mut collect_from = valid.collect_from;
        let mut recollect = None;
        if let Some(t) = &tombstone {
            if collect_from_given && valid.collect_from < t.watermark {
                if !options.recollect {
                    return Err(unusable(
                        "collectFrom",
                        &format!(
                            "is before {}, where this stamp was collected up to before it was removed (as {}); \
                             leave collectFrom out to resume there, or ask to re-collect (azs-usage stamp add \
                             --recollect) to replace those hours",
                            t.watermark.to_rfc3339(),
                            t.stamp_id
                        ),
                    ));
                }
                recollect = Some(ReportedWindow { start: valid.collect_from, end: t.watermark });
            }
            collect_from = if collect_from_given { valid.collect_from.max(t.watermark) } else { t.watermark };
        }
        let (credential, existing_secret) =
            self.resolve_credential(&valid.credential, &id, &valid.connection).await?;

        let mut stamp = Stamp {
            id: id.clone(),
            name: valid.name,
            credential_secret_name: existing_secret
                .clone()
                .unwrap_or_else(|| self.secrets.credential_name(&id)),
            connection: valid.connection,
            enabled: valid.enabled,
            collect_from,
            query_mode: valid.query_mode,
            created_at: now,
        };
        let verify = options.verify;
        if let Some(existing) = self.find_duplicate(&stamp.connection).await? {
            return Err(RegistrationError::Duplicate(existing));
        }
        self.check_name_free(&stamp.name, &stamp.id).await?;
        if verify {
            let report = self.verify(&stamp, &credential).await?;
            stamp.connection.pin(&report.endpoints.login_endpoint, &report.endpoints.audience);
        } else {
            self.pin_discovery(&mut stamp).await;
        }

        if existing_secret.is_none() {
            self.secrets
                .put_secret(
                    &stamp.credential_secret_name,
                    &credential.to_secret_for(&stamp.connection.admin_arm_endpoint),
                )
                .await
                .map_err(secret_store)?;
        }
        if let Err(e) = self.stamps.register_stamp(&stamp, &Attribution::now(by.clone())).await {
            if existing_secret.is_none() {
                // Compensate: a credential must not outlive a failed registration.
                if let Err(cleanup) = self.secrets.delete_secret(&stamp.credential_secret_name).await {
                    tracing::error!(stamp_id = %id, error = %cleanup, "could not delete the credential of a failed registration");
                }
            }
            return Err(e.into());
        }
        tracing::info!(stamp_id = %id, name = %stamp.name, resumed = tombstone.is_some(), "stamp registered");
        Ok(Registered { view: self.view(&id).await?, recollect })
    }

    /// Changes a registered stamp in place: every connection field, the credential, the query mode, the
    /// name and whether it is collected. Its id and watermark stay, so collection resumes exactly where
    /// it stood. The changed stamp passes the registration's rules, the host allow-list and the
    /// credential-secret rules, and, with `verify`, the same check against the stamp as a registration
    /// when anything the stamp sees changed. Nothing is written until all of that passed; a failed
    /// database write puts the previous credential back.
    pub async fn update(
        &self,
        handle: &StampId,
        patch: StampPatch,
        verify: bool,
        by: &Actor,
    ) -> Result<StampView, RegistrationError> {
        let current = self.stamp(handle).await?;
        let change = patch.apply(&current, Utc::now()).map_err(RegistrationError::Invalid)?;
        self.check_credential_binding(&current, &change)?;
        let mut stamp = change.stamp;
        self.source.check_endpoints(&stamp.connection).map_err(RegistrationError::Unusable)?;
        if stamp.name != current.name {
            self.check_name_free(&stamp.name, &stamp.id).await?;
        }
        if let Some(existing) =
            self.find_duplicate(&stamp.connection).await?.filter(|other| *other != stamp.id)
        {
            return Err(RegistrationError::Duplicate(existing));
        }
        let mut new_secret = None;
        let credential = match &change.credential {
            Some(input) => {
                let (credential, existing) =
                    self.resolve_credential(input, &stamp.id, &stamp.connection).await?;
                match existing {
                    Some(name) => stamp.credential_secret_name = name,
                    None => {
                        stamp.credential_secret_name = self.secrets.credential_name(&stamp.id);
                        new_secret = Some(credential.clone());
                    }
                }
                Some(credential)
            }
            None => None,
        };
        if verify && change.reaches_stamp {
            let credential = match credential {
                Some(credential) => credential,
                None => self.credential_of(&current).await?,
            };
            let report = self.verify(&stamp, &credential).await?;
            stamp.connection.pin(&report.endpoints.login_endpoint, &report.endpoints.audience);
        } else if change.reaches_stamp {
            self.pin_discovery(&mut stamp).await;
        }

        // The service-written credential keeps its name across rotations, so the old value is read
        // first: should the database refuse the change, the stamp gets the credential it still names.
        let previous = match &new_secret {
            Some(_) => self.secrets.get_secret(&stamp.credential_secret_name).await.map_err(secret_store)?,
            None => None,
        };
        if let Some(credential) = &new_secret {
            self.secrets
                .put_secret(
                    &stamp.credential_secret_name,
                    &credential.to_secret_for(&stamp.connection.admin_arm_endpoint),
                )
                .await
                .map_err(secret_store)?;
        }
        let attribution = Attribution::now(by.clone());
        if let Err(e) = self.stamps.change_stamp(&stamp, change.credential.is_some(), &attribution).await {
            if new_secret.is_some() {
                let name = &stamp.credential_secret_name;
                let restored = match &previous {
                    Some(value) => self.secrets.put_secret(name, value).await,
                    None => self.secrets.delete_secret(name).await,
                };
                if let Err(cleanup) = restored {
                    tracing::error!(stamp_id = %stamp.id, error = %cleanup, "could not put back the credential of a failed update");
                }
            }
            return Err(e.into());
        }
        // A credential we wrote and the stamp no longer names is only clutter (and a live secret).
        let ours = self.secrets.credential_name(&stamp.id);
        if secret_name_key(&current.credential_secret_name) != secret_name_key(&stamp.credential_secret_name)
            && secret_name_key(&current.credential_secret_name) == secret_name_key(&ours)
            && let Err(e) = self.secrets.delete_secret(&ours).await
        {
            tracing::warn!(stamp_id = %stamp.id, error = %e, "could not delete the credential the stamp no longer uses");
        }
        tracing::info!(stamp_id = %stamp.id, verified = verify && change.reaches_stamp, "stamp updated");
        self.view(&stamp.id).await
    }

    /// Pins the login endpoint and audience a registration left out to what the stamp's discovery
    /// says now (no credential is sent), when verification was not asked for: later runs then refuse a
    /// metadata document that names another login host instead of following it. A stamp that cannot
    /// be reached yet is stored unpinned (with a warning) and discovered on each run.
    async fn pin_discovery(&self, stamp: &mut Stamp) {
        if stamp.connection.is_pinned() {
            return;
        }
        match tokio::time::timeout(PIN_BUDGET, self.source.discover(stamp)).await {
            Ok(Ok(endpoints)) => stamp.connection.pin(&endpoints.login_endpoint, &endpoints.audience),
            Ok(Err(e)) => {
                tracing::warn!(stamp_id = %stamp.id, stage = ?e.stage, "discovery failed; the login endpoint is not pinned yet")
            }
            Err(_) => {
                tracing::warn!(stamp_id = %stamp.id, "no discovery answer in time; the login endpoint is not pinned yet")
            }
        }
    }

    /// A change that moves where the credential goes must bring a new one (see
    /// [`ValidChange::unbound_credential`]); naming the secret the stamp already uses, or the one the
    /// service stored for it, is the old credential under another field and does not count.
    fn check_credential_binding(
        &self,
        current: &Stamp,
        change: &ValidChange,
    ) -> Result<(), RegistrationError> {
        if let Some(errors) = change.unbound_credential() {
            return Err(RegistrationError::Unusable(errors));
        }
        if let (false, Some(CredentialInput::ExistingSecret(name))) =
            (change.rebinds.is_empty(), &change.credential)
        {
            // Compared as the strictest store does (Key Vault maps / _ . + = @ to -).
            let same = |other: &str| secret_name_key(other) == secret_name_key(name);
            if same(&current.credential_secret_name) || same(&self.secrets.credential_name(&current.id)) {
                return Err(unusable(
                    "credentialSecretName",
                    &format!(
                        "names the credential the stamp already uses, which was accepted for its old {}; \
                         give a new credential",
                        change.rebinds.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Stops collecting the stamp and deletes the credential we stored for it. Collected rows stay.
    pub async fn remove(&self, id: &StampId, by: &Actor) -> Result<(), RegistrationError> {
        let stamp = self.stamp(id).await?;
        let id = &stamp.id;
        // The stamp goes first: a stamp without its credential would fail every run, while a credential
        // without its stamp is only clutter, and the delete below removes it.
        self.stamps.remove_stamp(id, &Attribution::now(by.clone())).await?;
        if stamp.credential_secret_name == self.secrets.credential_name(id) {
            self.secrets.delete_secret(&stamp.credential_secret_name).await.map_err(|e| {
                RegistrationError::Unavailable(format!(
                    "stamp removed, but its credential could not be deleted yet: {e}"
                ))
            })?;
        }
        tracing::info!(stamp_id = %id, "stamp removed");
        Ok(())
    }

    /// Tests the stamp's connection. A stamp whose login endpoint was not pinned yet is pinned first
    /// (a change, recorded as `by`'s).
    pub async fn test(&self, id: &StampId, by: &Actor) -> Result<ConnectionReport, RegistrationError> {
        let mut stamp = self.stamp(id).await?;
        if !stamp.connection.is_pinned() {
            // Pinned first, by discovery alone, so that the credential only goes to the login host
            // found now (and kept): written only if nobody changed the stamp meanwhile.
            let endpoints = tokio::time::timeout(azs_azure_stack::TEST_BUDGET, self.source.discover(&stamp))
                .await
                .unwrap_or_else(|_| Err(azs_azure_stack::out_of_time()))
                .map_err(RegistrationError::Unverified)?;
            let before = stamp.clone();
            stamp.connection.pin(&endpoints.login_endpoint, &endpoints.audience);
            if self.stamps.get_stamp(&stamp.id).await?.as_ref() == Some(&before) {
                self.stamps.change_stamp(&stamp, false, &Attribution::now(by.clone())).await?;
            }
        }
        let credential = self.credential_of(&stamp).await?;
        self.verify(&stamp, &credential).await
    }

    pub async fn get(&self, id: &StampId) -> Result<StampView, RegistrationError> {
        self.view(id).await
    }

    pub async fn list(&self) -> Result<Vec<StampView>, RegistrationError> {
        let stamps = self.stamps.list_stamps().await?;
        let statuses = self.statuses.list_statuses().await?;
        Ok(stamps
            .into_iter()
            .map(|stamp| {
                let status = statuses.iter().find(|s| s.stamp_id == stamp.id).cloned();
                StampView { stamp, status }
            })
            .collect())
    }

    /// The stamp an operator named by its id or by its name (names are unique, case-insensitively,
    /// and never a GUID, so a handle means one stamp at most).
    pub async fn resolve(&self, handle: &str) -> Result<StampId, RegistrationError> {
        Ok(self.stamp(&StampId(handle.to_owned())).await?.id)
    }

    async fn stamp(&self, handle: &StampId) -> Result<Stamp, RegistrationError> {
        find_stamp(self.stamps.as_ref(), handle).await
    }

    async fn view(&self, handle: &StampId) -> Result<StampView, RegistrationError> {
        let stamp = self.stamp(handle).await?;
        let status = self.statuses.get_status(&stamp.id).await?;
        Ok(StampView { stamp, status })
    }

    /// Names are handles: unique in the installation, compared case-insensitively.
    async fn check_name_free(&self, name: &str, own: &StampId) -> Result<(), RegistrationError> {
        let wanted = name.to_lowercase();
        match self
            .stamps
            .list_stamps()
            .await?
            .into_iter()
            .find(|s| s.id != *own && s.name.to_lowercase() == wanted)
        {
            Some(other) => Err(unusable("name", &format!("is already the name of stamp {}", other.id))),
            None => Ok(()),
        }
    }

    async fn credential_of(&self, stamp: &Stamp) -> Result<Credential, RegistrationError> {
        let secret =
            self.secrets.get_secret(&stamp.credential_secret_name).await.map_err(secret_store)?.ok_or_else(
                || unusable("credentialSecretName", "names a secret that is not in the secret store"),
            )?;
        // Documents the service wrote before binding are unbound: those still serve their own stamp.
        if !Credential::document_fits(&secret, &stamp.connection.admin_arm_endpoint, true) {
            return Err(unusable("credentialSecretName", BOUND_ELSEWHERE));
        }
        Credential::from_secret(&stamp.credential_secret_name, &secret)
            .map_err(|e| unusable("credentialSecretName", &e.to_string()))
    }

    /// The credential to use, and the name of the operator's own secret when they pointed at one.
    /// An operator's secret is checked against the [`CredentialSecretRules`] before it is read, and
    /// its value must be a credential document: nothing else is ever sent to a stamp.
    async fn resolve_credential(
        &self,
        input: &CredentialInput,
        owner: &StampId,
        connection: &StampConnection,
    ) -> Result<(Credential, Option<String>), RegistrationError> {
        if let CredentialInput::ExistingSecret(name) = input {
            let stamps = self.stamps.list_stamps().await?;
            let others = stamps.iter().filter(|s| s.id != *owner).map(|s| s.credential_secret_name.as_str());
            if let Some(rule) = self.credential_rules.violation(name, owner.as_str(), others) {
                return Err(unusable("credentialSecretName", &rule));
            }
            let secret = self.secrets.get_secret(name).await.map_err(secret_store)?.ok_or_else(|| {
                unusable("credentialSecretName", "names a secret that is not in the secret store")
            })?;
            let credential = Credential::from_secret(name, &secret)
                .map_err(|e| unusable("credentialSecretName", &e.to_string()))?;
            // Provisioned for this stamp, or not used at all: a secret nobody names any more (left by a
            // removal or a credential switch, or created beforehand) must not be claimable for a
            // host of the caller's choosing.
            if !Credential::document_fits(&secret, &connection.admin_arm_endpoint, false) {
                return Err(unusable("credentialSecretName", BOUND_ELSEWHERE));
            }
            return Ok((credential, Some(name.clone())));
        }
        // Reading a certificate is CPU work (a PFX runs key derivations, bounded by the reader): on a
        // blocking thread, so a slow one never stalls the requests sharing this runtime, and within
        // its own budget.
        let (read, input) = (self.read_credential, input.clone());
        let thumbprint = connection.certificate_thumbprint.clone();
        // One at a time per process, the permit held by the reading thread itself: a PFX whose cost
        // hides where it cannot be read beforehand (inside its encrypted container) then burns at most
        // one core until it is done, however many are uploaded; other uploads meanwhile get the 422
        // below after the budget.
        let permit = CREDENTIAL_READERS.clone().acquire_owned();
        let reading = async move {
            let permit = permit.await.map_err(|_| ())?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                read(&input, thumbprint.as_deref())
            })
            .await
            .map_err(|_| ())
        };
        let credential = match tokio::time::timeout(CREDENTIAL_READ_BUDGET, reading).await {
            Ok(Ok(read)) => read.map_err(RegistrationError::Unusable)?,
            Ok(Err(())) => {
                return Err(RegistrationError::Unavailable("reading the credential failed".into()));
            }
            Err(_) => {
                return Err(unusable(
                    "certificate",
                    &format!("could not be read within {} s", CREDENTIAL_READ_BUDGET.as_secs()),
                ));
            }
        };
        Ok((credential.expect("inline credential input yields a credential"), None))
    }

    async fn find_duplicate(
        &self,
        connection: &StampConnection,
    ) -> Result<Option<StampId>, RegistrationError> {
        let endpoint = azs_core::registration::normalize_endpoint(&connection.admin_arm_endpoint);
        let admin = parse_guid(&connection.admin_subscription_id);
        Ok(self
            .stamps
            .list_stamps()
            .await?
            .into_iter()
            .find(|s| {
                azs_core::registration::normalize_endpoint(&s.connection.admin_arm_endpoint) == endpoint
                    && parse_guid(&s.connection.admin_subscription_id) == admin
            })
            .map(|s| s.id))
    }

    /// Discovery, a token, and a one-hour usage query of the last settled hour (per subscriber: the
    /// tenant list and one round of subscribers), answered within
    /// [`azs_azure_stack::TEST_BUDGET`] whatever the stamp does (an unreachable or silent host included).
    async fn verify(
        &self,
        stamp: &Stamp,
        credential: &Credential,
    ) -> Result<ConnectionReport, RegistrationError> {
        tokio::time::timeout(azs_azure_stack::TEST_BUDGET, self.verify_unbounded(stamp, credential))
            .await
            .unwrap_or_else(|_| Err(RegistrationError::Unverified(azs_azure_stack::out_of_time())))
    }

    async fn verify_unbounded(
        &self,
        stamp: &Stamp,
        credential: &Credential,
    ) -> Result<ConnectionReport, RegistrationError> {
        let session = self.source.connect(stamp, credential).await.map_err(RegistrationError::Unverified)?;
        let endpoints = session.endpoints().clone();
        let mut warnings = Vec::new();
        if endpoints.is_adfs != stamp.connection.is_adfs {
            return Err(RegistrationError::Unverified(PullError {
                stage: PullStage::Discovery,
                http_status: None,
                upstream_code: None,
                message: format!(
                    "isAdfs is {} but the stamp's login endpoint {} is {}",
                    stamp.connection.is_adfs,
                    endpoints.login_endpoint,
                    if endpoints.is_adfs { "AD FS" } else { "Azure AD" }
                ),
                transient: false,
            }));
        }
        if let Some(given) = &stamp.connection.token_request_resource_url
            && given.trim_end_matches('/') != endpoints.audience.trim_end_matches('/')
        {
            warnings.push(format!(
                "tokenRequestResourceUrl {given} differs from the discovered audience {}",
                endpoints.audience
            ));
        }
        let window = ReportedWindow::hour(floor_hour(Utc::now()) - chrono::Duration::hours(2));
        let summary = session.probe(window).await.map_err(RegistrationError::Unverified)?;
        Ok(ConnectionReport { endpoints, window, rows: summary.rows, pages: summary.pages, warnings })
    }
}

/// The stamp `handle` names: a stamp id or a stamp name (names are unique, case-insensitively, and
/// never a GUID, so a handle means one stamp at most).
pub async fn find_stamp(
    directory: &dyn StampDirectory,
    handle: &StampId,
) -> Result<Stamp, RegistrationError> {
    let not_found = || RegistrationError::NotFound(handle.clone());
    if let Some(id) = parse_guid(handle.as_str()) {
        return directory.get_stamp(&StampId(id)).await?.ok_or_else(not_found);
    }
    let name = handle.as_str().trim().to_lowercase();
    directory.list_stamps().await?.into_iter().find(|s| s.name.to_lowercase() == name).ok_or_else(not_found)
}
