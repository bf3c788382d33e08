//! Registering a stamp: the one input shape shared by `azs-usage stamp add` and `POST /stamps`, and the
//! field rules it must satisfy. Certificate parsing (PEM/PFX, thumbprint match) needs crypto and lives
//! with the stamp client; this module checks everything that is plain text.

use crate::error::ValidationErrors;
use crate::secret::Secret;
use crate::stamp::{Stamp, StampConnection, UsageQueryMode};
use crate::window::{is_whole_hour, start_of_month};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A registration as received. Every field is optional here so that validation can name each missing
/// one instead of failing on the first.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StampRegistration {
    pub name: Option<String>,
    pub admin_subscription_id: Option<String>,
    pub tenant_id: Option<String>,
    pub application_id: Option<String>,
    pub certificate_thumbprint: Option<String>,
    pub admin_arm_endpoint: Option<String>,
    pub token_request_resource_url: Option<String>,
    pub authority_endpoint_url: Option<String>,
    pub is_adfs: Option<bool>,
    pub application_secret: Option<Secret>,
    /// PEM (certificate and private key) or base64 PFX.
    pub certificate: Option<Secret>,
    pub certificate_password: Option<Secret>,
    /// A secret already in the store holding the credential.
    pub credential_secret_name: Option<String>,
    pub ca_certificate: Option<String>,
    pub collect_from: Option<String>,
    pub enabled: Option<bool>,
    pub query_mode: Option<UsageQueryMode>,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Which credential a registration brings.
#[derive(Debug, Clone)]
pub enum CredentialInput {
    ApplicationSecret(Secret),
    Certificate { material: Secret, password: Option<Secret> },
    ExistingSecret(String),
}

/// A registration whose plain-text fields passed every rule.
#[derive(Debug, Clone)]
pub struct ValidRegistration {
    pub name: String,
    pub connection: StampConnection,
    pub credential: CredentialInput,
    pub collect_from: DateTime<Utc>,
    pub enabled: bool,
    pub query_mode: UsageQueryMode,
}

pub const MAX_NAME_LEN: usize = 128;

/// The longest URL a stamp is stored with (its admin ARM endpoint, audience, authority; given or
/// discovered). Real ones are under 100 characters; the SQL Server columns hold 400, so a longer one
/// is refused here, naming the field, rather than by the database as a server error.
pub const MAX_URL_LEN: usize = 256;

/// Names are handles next to ids (`azs-usage stamp show NAME`, `/stamps/NAME`): a GUID as a name
/// could mean another stamp's id.
pub const NAME_NOT_A_GUID: &str = "must not be a GUID (names and ids both name stamps)";

/// No stamp has usage before Azure Stack's first release; an earlier start is a typo that would plan
/// a century of empty windows.
fn earliest_collect_from() -> DateTime<Utc> {
    DateTime::from_timestamp(1_451_606_400, 0).expect("2016-01-01 is representable")
}

impl StampRegistration {
    /// Checks every field and returns all violations at once.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<ValidRegistration, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        // Omitted: AD FS when the rest of the registration says so (the tenant `adfs` of Microsoft's
        // AD FS scripts, or an AD FS authority), else Azure AD. A wrong guess, like a wrong value,
        // fails verification with a message naming isAdfs.
        let is_adfs = self.is_adfs.unwrap_or_else(|| {
            self.tenant_id.as_deref().is_some_and(|t| t.trim().eq_ignore_ascii_case("adfs"))
                || self.authority_endpoint_url.as_deref().is_some_and(crate::stamp::is_adfs_login)
        });

        let admin_arm_endpoint =
            required_https_url(&mut errors, "adminArmEndpoint", self.admin_arm_endpoint.as_deref());
        let admin_subscription_id =
            required_guid(&mut errors, "adminSubscriptionId", self.admin_subscription_id.as_deref());
        let application_id = required_guid(&mut errors, "applicationId", self.application_id.as_deref());
        let tenant_id = match self.tenant_id.as_deref().map(str::trim) {
            None | Some("") => {
                errors.push("tenantId", "is required");
                String::new()
            }
            Some(t) if is_adfs && t.eq_ignore_ascii_case("adfs") => "adfs".to_owned(),
            Some(t) => match parse_guid(t) {
                Some(g) => g,
                None => {
                    errors.push(
                        "tenantId",
                        if is_adfs { "must be a GUID or \"adfs\"" } else { "must be a GUID" },
                    );
                    String::new()
                }
            },
        };
        let token_request_resource_url = optional_https_url(
            &mut errors,
            "tokenRequestResourceUrl",
            self.token_request_resource_url.as_deref(),
        );
        let authority_endpoint_url =
            optional_https_url(&mut errors, "authorityEndpointUrl", self.authority_endpoint_url.as_deref());
        let certificate_thumbprint = match self.certificate_thumbprint.as_deref().map(str::trim) {
            None | Some("") | Some("-") => None,
            Some(t) => {
                let cleaned: String = t.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
                if cleaned.len() == 40 && cleaned.chars().all(|c| c.is_ascii_hexdigit()) {
                    Some(cleaned.to_ascii_uppercase())
                } else {
                    errors.push(
                        "certificateThumbprint",
                        "must be 40 hexadecimal digits (the certificate's SHA-1)",
                    );
                    None
                }
            }
        };

        let name = match self.name.as_deref().map(str::trim) {
            None | Some("") => admin_arm_endpoint.clone().unwrap_or_default(),
            Some(n) if n.chars().count() > MAX_NAME_LEN => {
                errors.push("name", format!("must be at most {MAX_NAME_LEN} characters"));
                String::new()
            }
            Some(n) if n.chars().any(char::is_control) => {
                errors.push("name", "must not contain control characters");
                String::new()
            }
            Some(n) if parse_guid(n).is_some() => {
                errors.push("name", NAME_NOT_A_GUID);
                String::new()
            }
            Some(n) => n.to_owned(),
        };

        let credential = self.credential_input(&mut errors);

        let ca_certificate_pem = match self.ca_certificate.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Some(pem.to_owned()),
            Some(_) => {
                errors.push("caCertificate", "must be PEM (-----BEGIN CERTIFICATE-----)");
                None
            }
        };

        let collect_from = match self.collect_from.as_deref().map(str::trim) {
            None | Some("") => start_of_month(now),
            Some(s) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => {
                    let t = t.with_timezone(&Utc);
                    if !is_whole_hour(t) {
                        errors.push(
                            "collectFrom",
                            "must be a whole UTC hour (RFC 3339, e.g. 2026-11-01T00:00:00Z)",
                        );
                    } else if t > now {
                        errors.push("collectFrom", "must not be in the future");
                    } else if t < earliest_collect_from() {
                        errors.push(
                            "collectFrom",
                            "must not be before 2016-01-01 (Azure Stack Hub reports no earlier usage)",
                        );
                    }
                    t
                }
                Err(_) => {
                    errors.push("collectFrom", "must be an RFC 3339 time (e.g. 2026-11-01T00:00:00Z)");
                    now
                }
            },
        };

        let connection = StampConnection {
            admin_subscription_id: admin_subscription_id.unwrap_or_default(),
            tenant_id,
            application_id: application_id.unwrap_or_default(),
            certificate_thumbprint,
            admin_arm_endpoint: admin_arm_endpoint.unwrap_or_default(),
            token_request_resource_url,
            authority_endpoint_url,
            is_adfs,
            ca_certificate_pem,
        };
        let valid = ValidRegistration {
            name,
            connection,
            credential: credential.unwrap_or(CredentialInput::ExistingSecret(String::new())),
            collect_from,
            enabled: self.enabled.unwrap_or(true),
            query_mode: self.query_mode.unwrap_or_default(),
        };
        errors.into_result(valid)
    }

    fn credential_input(&self, errors: &mut ValidationErrors) -> Option<CredentialInput> {
        let given = [
            self.application_secret.is_some(),
            self.certificate.is_some(),
            self.credential_secret_name.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            errors.push(
                "applicationSecret",
                "exactly one credential is required: applicationSecret, certificate or credentialSecretName",
            );
            return None;
        }
        if self.certificate_password.is_some() && self.certificate.is_none() {
            errors.push("certificatePassword", "is only allowed with certificate");
        }
        if let Some(secret) = &self.application_secret {
            if secret.expose().trim().is_empty() || secret.expose().len() > 1024 {
                errors.push("applicationSecret", "must be 1 to 1024 characters");
                return None;
            }
            return Some(CredentialInput::ApplicationSecret(secret.clone()));
        }
        if let Some(material) = &self.certificate {
            if material.expose().trim().is_empty() || material.expose().len() > 64 * 1024 {
                errors.push("certificate", "must be PEM with its private key or base64 PFX, at most 64 KiB");
                return None;
            }
            return Some(CredentialInput::Certificate {
                material: material.clone(),
                password: self.certificate_password.clone(),
            });
        }
        let name = self.credential_secret_name.as_deref().unwrap_or_default().trim();
        if !is_valid_secret_name(name) {
            errors.push(
                "credentialSecretName",
                "must be 1 to 127 characters of letters, digits and / _ + = . @ -",
            );
            return None;
        }
        Some(CredentialInput::ExistingSecret(name.to_owned()))
    }
}

/// Changes to a registered stamp (`PATCH /stamps/{id}`, `azs-usage stamp update|enable|disable`).
/// Absent means unchanged; every connection field can change in place, keeping the stamp's id and
/// watermark. The changed stamp is held to the registration's rules ([`StampRegistration::validate`]):
/// there is one rule set, whichever way a stamp is written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StampPatch {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub admin_subscription_id: Option<String>,
    pub tenant_id: Option<String>,
    pub application_id: Option<String>,
    pub admin_arm_endpoint: Option<String>,
    /// Empty or `-`: discover it again.
    pub token_request_resource_url: Option<String>,
    /// Empty or `-`: discover it again.
    pub authority_endpoint_url: Option<String>,
    pub is_adfs: Option<bool>,
    pub query_mode: Option<UsageQueryMode>,
    pub application_secret: Option<Secret>,
    pub certificate: Option<Secret>,
    pub certificate_password: Option<Secret>,
    /// Empty or `-`: no thumbprint check.
    pub certificate_thumbprint: Option<String>,
    pub credential_secret_name: Option<String>,
    /// PEM, or an empty string to stop trusting a stamp-specific CA.
    pub ca_certificate: Option<String>,
}

/// A [`StampPatch`] applied to a stamp, every rule passed.
#[derive(Debug, Clone)]
pub struct ValidChange {
    /// The stamp as it will be stored (its id, watermark, `collectFrom` and creation time unchanged).
    /// When the credential changes, `credential_secret_name` is still the old one: where the new
    /// credential lives is decided by whoever stores it.
    pub stamp: Stamp,
    /// The new credential, when the patch brings one.
    pub credential: Option<CredentialInput>,
    /// Whether anything the stamp checks changed (connection, credential or query mode): such a change
    /// is verified against the stamp like a registration.
    pub reaches_stamp: bool,
    /// The fields (API names) this change moves the credential's binding with: where it is sent
    /// (admin ARM endpoint, login endpoint, audience, the CA trusted for them, AD FS or not) and whom it
    /// speaks for (tenant, application). A stored credential was accepted for the old values only, so
    /// such a change must bring a new credential (see [`ValidChange::unbound_credential`]).
    pub rebinds: Vec<&'static str>,
}

impl ValidChange {
    /// The violations when this change would send the stamp's *stored* credential somewhere it was
    /// not accepted for: every rebinding field, when the patch brings no new credential. Checked
    /// before any outbound connection; otherwise a caller with the API token could re-point a stamp at
    /// a host of their own and have verification, `/test` or the next run hand it the secret.
    pub fn unbound_credential(&self) -> Option<ValidationErrors> {
        if self.credential.is_some() || self.rebinds.is_empty() {
            return None;
        }
        let mut errors = ValidationErrors::default();
        for &field in &self.rebinds {
            errors.push(
                field,
                "changes where the stored credential is sent or whom it speaks for; give a new \
                 credential (applicationSecret, certificate or credentialSecretName) in the same request",
            );
        }
        Some(errors)
    }
}

impl StampPatch {
    /// Whether the patch brings a new credential.
    pub fn changes_credential(&self) -> bool {
        self.application_secret.is_some()
            || self.certificate.is_some()
            || self.credential_secret_name.is_some()
    }

    /// `stamp` with this patch applied, checked with the registration's rules (all violations at once).
    pub fn apply(&self, stamp: &Stamp, now: DateTime<Utc>) -> Result<ValidChange, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            // A registration without a name is named after its endpoint; a rename to nothing is a mistake.
            errors.push("name", "must not be empty");
        }
        let current = &stamp.connection;
        let pick = |given: &Option<String>, now: &str| given.clone().unwrap_or_else(|| now.to_owned());
        let admin_arm_endpoint = pick(&self.admin_arm_endpoint, &current.admin_arm_endpoint);
        let is_adfs = self.is_adfs.unwrap_or(current.is_adfs);
        // What discovery found belongs to the endpoint and the identity provider it was found with:
        // when either changes, it is discovered again unless the patch names it.
        let rediscover = normalize_endpoint(&admin_arm_endpoint)
            != normalize_endpoint(&current.admin_arm_endpoint)
            || is_adfs != current.is_adfs;
        let discovered = |given: &Option<String>, now: &Option<String>| match given {
            Some(v) => Some(v.clone()),
            None if rediscover => None,
            None => now.clone(),
        };
        let new_credential = self.changes_credential();
        let merged = StampRegistration {
            name: Some(pick(&self.name, &stamp.name)),
            admin_subscription_id: Some(pick(&self.admin_subscription_id, &current.admin_subscription_id)),
            tenant_id: Some(pick(&self.tenant_id, &current.tenant_id)),
            application_id: Some(pick(&self.application_id, &current.application_id)),
            // A new credential brings its own thumbprint (or none); the stored one keeps the stamp's.
            certificate_thumbprint: if new_credential {
                self.certificate_thumbprint.clone()
            } else {
                self.certificate_thumbprint.clone().or_else(|| current.certificate_thumbprint.clone())
            },
            admin_arm_endpoint: Some(admin_arm_endpoint),
            token_request_resource_url: discovered(
                &self.token_request_resource_url,
                &current.token_request_resource_url,
            ),
            authority_endpoint_url: discovered(&self.authority_endpoint_url, &current.authority_endpoint_url),
            is_adfs: Some(is_adfs),
            application_secret: self.application_secret.clone(),
            certificate: self.certificate.clone(),
            certificate_password: self.certificate_password.clone(),
            credential_secret_name: if new_credential {
                self.credential_secret_name.clone()
            } else {
                Some(stamp.credential_secret_name.clone())
            },
            ca_certificate: self.ca_certificate.clone().or_else(|| current.ca_certificate_pem.clone()),
            // Where collection started is history, not a connection field: never re-checked here.
            collect_from: None,
            enabled: Some(self.enabled.unwrap_or(stamp.enabled)),
            query_mode: Some(self.query_mode.unwrap_or(stamp.query_mode)),
        };
        let valid = match merged.validate(now) {
            Ok(valid) => Some(valid),
            Err(e) => {
                errors.0.extend(e.0);
                None
            }
        };
        let Some(valid) = valid.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        let reaches_stamp =
            valid.connection != *current || new_credential || valid.query_mode != stamp.query_mode;
        let rebinds = self.rebinds(current, &valid.connection);
        Ok(ValidChange {
            stamp: Stamp {
                id: stamp.id.clone(),
                name: valid.name,
                connection: valid.connection,
                credential_secret_name: stamp.credential_secret_name.clone(),
                enabled: valid.enabled,
                collect_from: stamp.collect_from,
                query_mode: valid.query_mode,
                created_at: stamp.created_at,
            },
            credential: new_credential.then_some(valid.credential),
            reaches_stamp,
            rebinds,
        })
    }

    /// The binding fields whose value `next` changes from `current` (see [`ValidChange::rebinds`]).
    /// The login endpoint and audience count only when the patch names them: a moved admin ARM
    /// endpoint already forgets them (they are discovered again) and is named itself.
    fn rebinds(&self, current: &StampConnection, next: &StampConnection) -> Vec<&'static str> {
        let same_url = |a: &Option<String>, b: &Option<String>| {
            a.as_deref().map(|u| u.trim().trim_end_matches('/').to_ascii_lowercase())
                == b.as_deref().map(|u| u.trim().trim_end_matches('/').to_ascii_lowercase())
        };
        let mut fields = Vec::new();
        if normalize_endpoint(&next.admin_arm_endpoint) != normalize_endpoint(&current.admin_arm_endpoint) {
            fields.push("adminArmEndpoint");
        }
        if self.authority_endpoint_url.is_some()
            && !same_url(&next.authority_endpoint_url, &current.authority_endpoint_url)
        {
            fields.push("authorityEndpointUrl");
        }
        if self.token_request_resource_url.is_some()
            && !same_url(&next.token_request_resource_url, &current.token_request_resource_url)
        {
            fields.push("tokenRequestResourceUrl");
        }
        if !next.tenant_id.eq_ignore_ascii_case(&current.tenant_id) {
            fields.push("tenantId");
        }
        if !next.application_id.eq_ignore_ascii_case(&current.application_id) {
            fields.push("applicationId");
        }
        if next.is_adfs != current.is_adfs {
            fields.push("isAdfs");
        }
        if next.ca_certificate_pem != current.ca_certificate_pem {
            fields.push("caCertificate");
        }
        fields
    }
}

/// Secret names both AWS Secrets Manager and our file store accept (Key Vault maps `/` etc. itself).
pub fn is_valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

/// Where a stamp's credential may be read from. A registration that names an existing secret
/// (`credentialSecretName`) makes the service read that secret and present its value to a token
/// endpoint the caller chose, so the name is held to these rules before anything is read:
/// - it lies under the configured prefix (the part of the store that holds stamp credentials);
/// - it is none of the service's own secrets (the database connection, the API token);
/// - it does not have the shape of a name the service writes for a stamp (`prefix + UUID`) unless it
///   is this stamp's own, so no caller can borrow another stamp's credential;
/// - no other stamp uses it.
///
/// Names are compared as Key Vault sees them (case-insensitive, `/ _ . + = @` as `-`), so two
/// spellings of one vault secret cannot slip past each other.
#[derive(Debug, Clone, Default)]
pub struct CredentialSecretRules {
    prefix: String,
    reserved: Vec<String>,
}

impl CredentialSecretRules {
    /// `prefix`: the configured credential prefix; `reserved`: the names of the service's own secrets.
    pub fn new(prefix: impl Into<String>, reserved: impl IntoIterator<Item = String>) -> Self {
        Self { prefix: prefix.into(), reserved: reserved.into_iter().collect() }
    }

    /// The rule `name` breaks as the credential secret of stamp `owner`, given every other stamp's
    /// credential secret name; `None` when it may be used.
    pub fn violation<'a>(
        &self,
        name: &str,
        owner: &str,
        others: impl IntoIterator<Item = &'a str>,
    ) -> Option<String> {
        if !is_valid_secret_name(name) {
            return Some("must be 1 to 127 characters of letters, digits and / _ + = . @ -".into());
        }
        let key = secret_name_key(name);
        let prefix = secret_name_key(&self.prefix);
        let Some(rest) = key.strip_prefix(&prefix).filter(|r| !r.is_empty()) else {
            return Some(format!("must name a secret under the configured prefix {:?}", self.prefix));
        };
        if self.reserved.iter().any(|r| secret_name_key(r) == key) {
            return Some("must not name one of the service's own secrets".into());
        }
        if parse_guid(rest).is_some_and(|id| !id.eq_ignore_ascii_case(owner)) {
            return Some("must not name a credential the service stored for another stamp".into());
        }
        if others.into_iter().any(|other| secret_name_key(other) == key) {
            return Some("names a secret another stamp already uses".into());
        }
        None
    }
}

/// A secret name as the strictest store (Key Vault) compares it: two names with the same key are one
/// secret there.
pub fn secret_name_key(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| if matches!(c, '/' | '_' | '.' | '+' | '=' | '@') { '-' } else { c.to_ascii_lowercase() })
        .collect()
}

/// Canonical lower-case GUID text, if `s` is a GUID (with or without braces).
pub fn parse_guid(s: &str) -> Option<String> {
    let s = s.trim().trim_start_matches('{').trim_end_matches('}');
    uuid::Uuid::try_parse(s).ok().filter(|_| s.len() == 36).map(|u| u.hyphenated().to_string())
}

fn required_guid(errors: &mut ValidationErrors, field: &str, value: Option<&str>) -> Option<String> {
    match value.map(str::trim) {
        None | Some("") => {
            errors.push(field, "is required");
            None
        }
        Some(v) => {
            let g = parse_guid(v);
            if g.is_none() {
                errors.push(field, "must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
            }
            g
        }
    }
}

fn required_https_url(errors: &mut ValidationErrors, field: &str, value: Option<&str>) -> Option<String> {
    match value.map(str::trim) {
        None | Some("") => {
            errors.push(field, "is required");
            None
        }
        Some(v) => check_https_url(errors, field, v),
    }
}

/// `-` (the seed's placeholder) and empty mean "discover it".
fn optional_https_url(errors: &mut ValidationErrors, field: &str, value: Option<&str>) -> Option<String> {
    match value.map(str::trim) {
        None | Some("") | Some("-") => None,
        Some(v) => check_https_url(errors, field, v),
    }
}

fn check_https_url(errors: &mut ValidationErrors, field: &str, v: &str) -> Option<String> {
    if v.chars().count() > MAX_URL_LEN {
        errors.push(field, format!("must be at most {MAX_URL_LEN} characters"));
        return None;
    }
    match url::Url::parse(v) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()) => {
            if !u.username().is_empty() || u.password().is_some() {
                errors.push(field, "must not contain user information");
                return None;
            }
            if u.query().is_some() || u.fragment().is_some() {
                errors.push(field, "must not contain a query or fragment");
                return None;
            }
            Some(v.to_owned())
        }
        _ => {
            errors.push(field, "must be an absolute https:// URL");
            None
        }
    }
}

/// Normalises an admin ARM endpoint for comparisons: no trailing slash, lower-case scheme and host.
pub fn normalize_endpoint(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => u.as_str().trim_end_matches('/').to_owned(),
        Err(_) => url.trim_end_matches('/').to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-26T10:30:00Z".parse().unwrap()
    }

    fn valid() -> StampRegistration {
        StampRegistration {
            name: Some("stamp-eu-1".into()),
            admin_subscription_id: Some("0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f".into()),
            tenant_id: Some("4de154de-f8a8-4017-af41-df619da68155".into()),
            application_id: Some("11111111-2222-3333-4444-555555555555".into()),
            admin_arm_endpoint: Some("https://adminmanagement.local.azurestack.external".into()),
            application_secret: Some(Secret::new("s3cret")),
            ..Default::default()
        }
    }

    fn fields(r: &StampRegistration) -> Vec<String> {
        r.validate(now()).unwrap_err().0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_minimal_secret_registration_is_valid_and_defaults_to_the_start_of_the_month() {
        let v = valid().validate(now()).unwrap();
        assert_eq!(v.collect_from, "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(v.enabled);
        assert!(v.connection.token_request_resource_url.is_none());
    }

    #[test]
    fn every_invalid_field_is_named() {
        let r = StampRegistration {
            admin_subscription_id: Some("not-a-guid".into()),
            tenant_id: None,
            application_id: Some("x".into()),
            admin_arm_endpoint: Some("http://insecure".into()),
            certificate_thumbprint: Some("abc".into()),
            collect_from: Some("yesterday".into()),
            ..valid()
        };
        let f = fields(&r);
        for want in [
            "adminSubscriptionId",
            "tenantId",
            "applicationId",
            "adminArmEndpoint",
            "certificateThumbprint",
            "collectFrom",
        ] {
            assert!(f.contains(&want.to_string()), "{want} missing from {f:?}");
        }
    }

    #[test]
    fn a_url_longer_than_the_store_keeps_is_refused_by_name() {
        let long = format!("https://azs.contoso.com/{}", "a".repeat(MAX_URL_LEN));
        let r = StampRegistration {
            admin_arm_endpoint: Some(long.clone()),
            token_request_resource_url: Some(long.clone()),
            authority_endpoint_url: Some(long),
            ..valid()
        };
        let errors = r.validate(now()).unwrap_err();
        let named: Vec<(&str, &str)> = errors.0.iter().map(|e| (e.field.as_str(), e.rule.as_str())).collect();
        let rule = format!("must be at most {MAX_URL_LEN} characters");
        for field in ["adminArmEndpoint", "tokenRequestResourceUrl", "authorityEndpointUrl"] {
            assert!(named.contains(&(field, rule.as_str())), "{field}: {named:?}");
        }
        let longest = format!("https://azs.contoso.com/{}", "a".repeat(MAX_URL_LEN - 24));
        assert_eq!(longest.len(), MAX_URL_LEN);
        assert!(StampRegistration { admin_arm_endpoint: Some(longest), ..valid() }.validate(now()).is_ok());
    }

    #[test]
    fn exactly_one_credential_is_required() {
        let none = StampRegistration { application_secret: None, ..valid() };
        assert_eq!(fields(&none), vec!["applicationSecret"]);
        let two = StampRegistration { credential_secret_name: Some("x".into()), ..valid() };
        assert_eq!(fields(&two), vec!["applicationSecret"]);
    }

    #[test]
    fn adfs_accepts_the_adfs_tenant() {
        let r = StampRegistration { tenant_id: Some("adfs".into()), is_adfs: Some(true), ..valid() };
        assert_eq!(r.validate(now()).unwrap().connection.tenant_id, "adfs");
        let r = StampRegistration { tenant_id: Some("adfs".into()), is_adfs: Some(false), ..valid() };
        assert_eq!(fields(&r), vec!["tenantId"]);
    }

    #[test]
    fn an_omitted_is_adfs_follows_the_tenant_and_the_authority() {
        let adfs = |r: StampRegistration| r.validate(now()).unwrap().connection.is_adfs;
        assert!(!adfs(valid()), "Azure AD unless something says AD FS");
        assert!(adfs(StampRegistration { tenant_id: Some(" ADFS ".into()), ..valid() }));
        let authority = Some("https://adfs.local.azurestack.external/adfs/".to_owned());
        assert!(adfs(StampRegistration { authority_endpoint_url: authority.clone(), ..valid() }));
        let given = StampRegistration { authority_endpoint_url: authority, is_adfs: Some(false), ..valid() };
        assert!(!adfs(given), "a given isAdfs is kept (verification will say if it is wrong)");
    }

    #[test]
    fn collect_from_must_be_a_past_whole_hour() {
        let r = StampRegistration { collect_from: Some("2026-11-25T10:30:00Z".into()), ..valid() };
        assert_eq!(fields(&r), vec!["collectFrom"]);
        let r = StampRegistration { collect_from: Some("2026-12-25T10:00:00Z".into()), ..valid() };
        assert_eq!(fields(&r), vec!["collectFrom"]);
        let r = StampRegistration { collect_from: Some("1500-01-01T00:00:00Z".into()), ..valid() };
        assert_eq!(fields(&r), vec!["collectFrom"]);
        let r = StampRegistration { collect_from: Some("2999-01-01T00:00:00Z".into()), ..valid() };
        assert_eq!(fields(&r), vec!["collectFrom"]);
    }

    #[test]
    fn thumbprints_are_normalised_to_upper_case_hex() {
        let r = StampRegistration {
            certificate_thumbprint: Some("ab:cd".repeat(10).replace(':', "")),
            ..valid()
        };
        assert_eq!(r.validate(now()).unwrap().connection.certificate_thumbprint.unwrap(), "ABCD".repeat(10));
    }

    #[test]
    fn a_credential_secret_must_lie_under_the_prefix_and_belong_to_no_one_else() {
        let rules = CredentialSecretRules::new(
            "azs-usage/",
            ["azs-usage/database".to_owned(), "azs-usage/api-token".to_owned()],
        );
        let me = "aaaaaaaa-0000-0000-0000-000000000001";
        let other = "bbbbbbbb-0000-0000-0000-000000000002";
        assert_eq!(rules.violation("azs-usage/stamp-eu-1", me, []), None);
        assert_eq!(rules.violation(&format!("azs-usage/{me}"), me, []), None);
        for refused in [
            "database-password",
            "azs-usage/",
            "azs-usage/database",
            "AZS-USAGE-DATABASE",
            "azs-usage_api-token",
            &format!("azs-usage/{other}"),
            &format!("azs-usage/{}", other.to_uppercase()),
        ] {
            assert!(rules.violation(refused, me, []).is_some(), "{refused} was accepted");
        }
        assert!(rules.violation("azs-usage/shared", me, ["azs-usage/shared"]).is_some());
        assert!(rules.violation("azs-usage/shared", me, ["azs-usage/other"]).is_none());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<StampRegistration>(r#"{"name":"x","surprise":1}"#).unwrap_err();
        assert!(e.to_string().contains("surprise"));
    }

    /// A stamp as registered and verified: discovery filled in the audience and authority.
    fn registered() -> Stamp {
        let valid = valid().validate(now()).unwrap();
        let mut connection = valid.connection;
        connection.token_request_resource_url =
            Some("https://management.local.azurestack.external/abc".into());
        connection.authority_endpoint_url = Some("https://login.example/".into());
        Stamp {
            id: crate::StampId("aaaaaaaa-0000-4000-8000-000000000001".into()),
            name: valid.name,
            connection,
            credential_secret_name: "azs-usage/aaaaaaaa-0000-4000-8000-000000000001".into(),
            enabled: true,
            collect_from: valid.collect_from,
            query_mode: UsageQueryMode::AllTenants,
            created_at: now(),
        }
    }

    #[test]
    fn a_patch_that_changes_nothing_the_stamp_sees_needs_no_verification() {
        let stamp = registered();
        let patch = StampPatch { name: Some("renamed".into()), enabled: Some(false), ..Default::default() };
        let change = patch.apply(&stamp, now()).unwrap();
        assert!(!change.reaches_stamp && change.credential.is_none());
        assert_eq!((change.stamp.name.as_str(), change.stamp.enabled), ("renamed", false));
        assert_eq!(change.stamp.connection, stamp.connection);
        assert_eq!(change.stamp.collect_from, stamp.collect_from);
    }

    #[test]
    fn a_moved_endpoint_is_discovered_again_and_verified() {
        let stamp = registered();
        let patch = StampPatch {
            admin_arm_endpoint: Some("https://adminmanagement.moved.example".into()),
            ..Default::default()
        };
        let change = patch.apply(&stamp, now()).unwrap();
        assert!(change.reaches_stamp);
        assert_eq!(change.stamp.connection.token_request_resource_url, None);
        assert_eq!(change.stamp.connection.authority_endpoint_url, None);
        assert_eq!(change.stamp.id, stamp.id);
    }

    #[test]
    fn a_patch_is_held_to_the_registration_rules() {
        let stamp = registered();
        let patch = StampPatch {
            name: Some("  ".into()),
            tenant_id: Some("x".into()),
            admin_arm_endpoint: Some("http://plain.example".into()),
            certificate_password: Some(Secret::new("p")),
            application_secret: Some(Secret::new("a")),
            credential_secret_name: Some("azs-usage/x".into()),
            ..Default::default()
        };
        let fields: Vec<String> =
            patch.apply(&stamp, now()).unwrap_err().0.into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["name", "adminArmEndpoint", "tenantId", "applicationSecret"]);
    }

    #[test]
    fn a_patch_that_moves_where_the_stored_credential_goes_needs_a_new_credential() {
        let stamp = registered();
        let field = |patch: StampPatch| -> Vec<String> {
            let change = patch.apply(&stamp, now()).unwrap();
            change.unbound_credential().map_or_else(Vec::new, |e| e.0.into_iter().map(|e| e.field).collect())
        };
        let url = |u: &str| Some(u.to_owned());
        // (caCertificate is covered through the webhook, with the simulator's CA.)
        let cases: [(StampPatch, &str); 6] = [
            (
                StampPatch {
                    admin_arm_endpoint: url("https://adminmanagement.evil.example"),
                    ..Default::default()
                },
                "adminArmEndpoint",
            ),
            (
                StampPatch {
                    authority_endpoint_url: url("https://login.evil.example/"),
                    ..Default::default()
                },
                "authorityEndpointUrl",
            ),
            (
                StampPatch {
                    token_request_resource_url: url("https://evil.example/x"),
                    ..Default::default()
                },
                "tokenRequestResourceUrl",
            ),
            (
                StampPatch { tenant_id: url("0f0e0d0c-0b0a-4909-8807-060504030201"), ..Default::default() },
                "tenantId",
            ),
            (
                StampPatch {
                    application_id: url("0f0e0d0c-0b0a-4909-8807-060504030201"),
                    ..Default::default()
                },
                "applicationId",
            ),
            (
                StampPatch {
                    is_adfs: Some(true),
                    authority_endpoint_url: url("https://adfs.example/adfs/"),
                    ..Default::default()
                },
                "isAdfs",
            ),
        ];
        for (patch, named) in cases {
            assert!(field(patch.clone()).contains(&named.to_owned()), "{named} was not named");
            // The same change with a new credential in the request is bound to that credential.
            let with_credential = StampPatch { application_secret: Some(Secret::new("new")), ..patch };
            assert_eq!(field(with_credential), Vec::<String>::new(), "{named}");
        }
        // Renaming, pausing or the query mode move nothing; re-stating the current endpoint neither.
        let harmless = StampPatch {
            name: Some("renamed".into()),
            enabled: Some(false),
            query_mode: Some(UsageQueryMode::PerSubscriber),
            admin_arm_endpoint: Some(format!("{}/", stamp.connection.admin_arm_endpoint.to_uppercase())),
            authority_endpoint_url: stamp.connection.authority_endpoint_url.clone(),
            ..Default::default()
        };
        assert_eq!(field(harmless), Vec::<String>::new());
    }

    #[test]
    fn a_new_credential_brings_its_own_thumbprint() {
        let mut stamp = registered();
        stamp.connection.certificate_thumbprint = Some("A".repeat(40));
        let patch = StampPatch { application_secret: Some(Secret::new("new")), ..Default::default() };
        let change = patch.apply(&stamp, now()).unwrap();
        assert!(change.reaches_stamp);
        assert!(matches!(change.credential, Some(CredentialInput::ApplicationSecret(_))));
        assert_eq!(change.stamp.connection.certificate_thumbprint, None);
    }
}
