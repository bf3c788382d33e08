//! A stamp: one Azure Stack Hub region whose usage we collect, and how to reach it.
//!
//! The fields are the seed product's `Config.Connections` (Cloud Assert's
//! `CreateAzureStackConnection` arguments), plus what a careful collector needs besides: a display name,
//! the stamp's own CA bundle, where the credential lives, and where collection starts.

use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Our id for a registered stamp (a UUID, as text so every store keeps it the same way).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StampId(pub String);

impl StampId {
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StampId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The connection fields of the seed's `Config.Connections`, validated (see `registration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StampConnection {
    /// The operator's "Default Provider" subscription on the stamp.
    pub admin_subscription_id: String,
    /// Directory tenant id (a GUID; `adfs` is also accepted on AD FS stamps).
    pub tenant_id: String,
    /// The service principal's application (client) id.
    pub application_id: String,
    /// SHA-1 of the client certificate, 40 upper-case hex digits; `None` when a secret is used.
    pub certificate_thumbprint: Option<String>,
    /// `https://adminmanagement.{region}.{fqdn}`, without a trailing slash.
    pub admin_arm_endpoint: String,
    /// Token audience (`resource=`). `None` until discovery fills it.
    pub token_request_resource_url: Option<String>,
    /// Login endpoint (Azure AD `https://login.../` or AD FS `https://adfs.../adfs/`). `None` until discovery.
    pub authority_endpoint_url: Option<String>,
    pub is_adfs: bool,
    /// PEM bundle of the stamp's own root(s), trusted in addition to the system roots.
    pub ca_certificate_pem: Option<String>,
}

impl StampConnection {
    /// Whether the login endpoint and audience the credential is bound to are known (pinned).
    pub fn is_pinned(&self) -> bool {
        let known = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        known(&self.authority_endpoint_url) && known(&self.token_request_resource_url)
    }

    /// Pins what discovery found where nothing is pinned yet (a value already there stays).
    pub fn pin(&mut self, login_endpoint: &str, audience: &str) {
        let unset = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
        if unset(&self.authority_endpoint_url) {
            self.authority_endpoint_url = Some(login_endpoint.to_owned());
        }
        if unset(&self.token_request_resource_url) {
            self.token_request_resource_url = Some(audience.to_owned());
        }
    }
}

/// The reference's rule: a stamp is AD FS when its login endpoint, without its trailing `/`, ends with
/// `/adfs` (`https://adfs.local.azurestack.external/adfs/`); `https://login.windows.net/` is Azure AD.
pub fn is_adfs_login(login_endpoint: &str) -> bool {
    login_endpoint.trim().trim_end_matches('/').to_ascii_lowercase().ends_with("/adfs")
}

/// How usage is queried on a stamp. All tenants at once is one request chain per window; large stamps
/// hit gateway timeouts with it, so Microsoft's own script moved to one chain per tenant subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsageQueryMode {
    #[default]
    AllTenants,
    PerSubscriber,
}

/// A registered stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stamp {
    pub id: StampId,
    pub name: String,
    pub connection: StampConnection,
    /// Name of the secret (in the configured secret store) that holds this stamp's [`Credential`].
    pub credential_secret_name: String,
    pub enabled: bool,
    /// First reported hour to collect (whole UTC hour).
    pub collect_from: DateTime<Utc>,
    pub query_mode: UsageQueryMode,
    pub created_at: DateTime<Utc>,
}

/// A secret whose value is not a credential document. Names the secret, never carries its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "secret {secret_name:?} does not hold a credential document \
     ({{\"kind\":\"applicationSecret\",\"applicationSecret\":...,\"adminArmEndpoint\":...}} or \
     {{\"kind\":\"certificate\",\"certificatePem\":...,\"privateKeyPem\":...,\"adminArmEndpoint\":...}})"
)]
pub struct NotACredential {
    pub secret_name: String,
}

/// What is left of a removed stamp: its id and how far it was collected. Registering the same stamp
/// (same admin ARM endpoint and admin subscription) again takes the id back and resumes from the
/// watermark, so no hour is stored twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tombstone {
    pub stamp_id: StampId,
    pub name: String,
    pub watermark: DateTime<Utc>,
    pub removed_at: DateTime<Utc>,
}

/// What the stamp's service principal proves itself with. Lives only in the secret store.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Credential {
    ApplicationSecret(Secret),
    /// A certificate (PEM, leaf first) and its RSA private key (PEM, PKCS#8 or PKCS#1).
    Certificate {
        certificate_pem: String,
        private_key_pem: Secret,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
enum StoredCredential {
    #[serde(rename_all = "camelCase")]
    ApplicationSecret {
        application_secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin_arm_endpoint: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Certificate {
        certificate_pem: String,
        private_key_pem: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin_arm_endpoint: Option<String>,
    },
}

impl Credential {
    /// The JSON document kept in the secret store (itself a secret), bound to the stamp it is for:
    /// `adminArmEndpoint` names the admin ARM endpoint the credential may be sent to (see
    /// [`Credential::bound_endpoint`]).
    pub fn to_secret_for(&self, admin_arm_endpoint: &str) -> Secret {
        let admin_arm_endpoint = Some(admin_arm_endpoint.to_owned());
        let stored = match self {
            Credential::ApplicationSecret(s) => StoredCredential::ApplicationSecret {
                application_secret: s.expose().to_owned(),
                admin_arm_endpoint,
            },
            Credential::Certificate { certificate_pem, private_key_pem } => StoredCredential::Certificate {
                certificate_pem: certificate_pem.clone(),
                private_key_pem: private_key_pem.expose().to_owned(),
                admin_arm_endpoint,
            },
        };
        Secret::new(serde_json::to_string(&stored).expect("credential serialises"))
    }

    /// The admin ARM endpoint a credential document was provisioned for (its `adminArmEndpoint`),
    /// `None` when it names none (documents written before documents were bound). A secret under the
    /// credential prefix that no stamp names could otherwise be named by any webhook caller for a
    /// host of their own; bound, it only ever goes to the stamp it was provisioned for.
    pub fn bound_endpoint(secret: &Secret) -> Option<String> {
        match serde_json::from_str::<StoredCredential>(secret.expose()).ok()? {
            StoredCredential::ApplicationSecret { admin_arm_endpoint, .. }
            | StoredCredential::Certificate { admin_arm_endpoint, .. } => admin_arm_endpoint,
        }
    }

    /// Whether a document may be used for the stamp at `admin_arm_endpoint`: bound to it, or (only
    /// where `legacy_unbound` allows, for documents the service wrote before binding) unbound.
    pub fn document_fits(secret: &Secret, admin_arm_endpoint: &str, legacy_unbound: bool) -> bool {
        match Self::bound_endpoint(secret) {
            Some(bound) => {
                crate::registration::normalize_endpoint(&bound)
                    == crate::registration::normalize_endpoint(admin_arm_endpoint)
            }
            None => legacy_unbound,
        }
    }

    /// Reads the JSON document written by [`Credential::to_secret`]. Anything else is refused, naming
    /// the secret but never its value: a value that is not a credential document must never be sent to
    /// a token endpoint as a client secret (it may be a database password or an API token).
    pub fn from_secret(name: &str, secret: &Secret) -> Result<Credential, NotACredential> {
        match serde_json::from_str::<StoredCredential>(secret.expose()) {
            Ok(StoredCredential::ApplicationSecret { application_secret, .. }) => {
                Ok(Credential::ApplicationSecret(Secret::new(application_secret)))
            }
            Ok(StoredCredential::Certificate { certificate_pem, private_key_pem, .. }) => {
                Ok(Credential::Certificate { certificate_pem, private_key_pem: Secret::new(private_key_pem) })
            }
            Err(_) => Err(NotACredential { secret_name: name.to_owned() }),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ApplicationSecret(_) => "applicationSecret",
            Credential::Certificate { .. } => "certificate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_round_trips_through_its_secret_document() {
        let cert = Credential::Certificate {
            certificate_pem: "-----BEGIN CERTIFICATE-----".into(),
            private_key_pem: Secret::new("KEY"),
        };
        let endpoint = "https://adminmanagement.local.azurestack.external";
        assert_eq!(Credential::from_secret("n", &cert.to_secret_for(endpoint)).unwrap(), cert);
        let sec = Credential::ApplicationSecret(Secret::new("s3cret"));
        assert_eq!(Credential::from_secret("n", &sec.to_secret_for(endpoint)).unwrap(), sec);
    }

    #[test]
    fn a_credential_document_fits_only_the_stamp_it_was_provisioned_for() {
        let sec = Credential::ApplicationSecret(Secret::new("s3cret"));
        let bound = sec.to_secret_for("https://adminmanagement.east.contoso.com");
        assert!(Credential::document_fits(&bound, "https://ADMINMANAGEMENT.east.contoso.com/", false));
        assert!(!Credential::document_fits(&bound, "https://adminmanagement.evil.example", true));
        // A document written before documents were bound: where the caller allows it, and only there.
        let unbound = Secret::new(r#"{"kind":"applicationSecret","applicationSecret":"s3cret"}"#);
        assert_eq!(Credential::from_secret("n", &unbound).unwrap(), sec);
        assert!(Credential::document_fits(&unbound, "https://x.example", true));
        assert!(!Credential::document_fits(&unbound, "https://x.example", false));
    }

    #[test]
    fn a_value_that_is_not_a_credential_document_is_refused_naming_the_secret_not_the_value() {
        for value in ["plain-text-password", r#"{"kind":"applicationSecret"}"#, "Server=db;Password=pw"] {
            let e = Credential::from_secret("azs-usage/database", &Secret::new(value)).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("azs-usage/database"), "{text}");
            assert!(!text.contains(value), "the value leaked: {text}");
        }
    }

    #[test]
    fn debug_of_a_credential_hides_the_key() {
        let cert =
            Credential::Certificate { certificate_pem: "C".into(), private_key_pem: Secret::new("PRIVATE") };
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }
}
