//! The stamp's client credential and TLS trust, read from what an operator registers.
//!
//! A registration brings either an application secret or a client certificate, the latter as PEM
//! (certificate + unencrypted RSA key, PKCS#8 or PKCS#1) or as a base64 PFX with its password (what
//! the privileged endpoint's `New-GraphApplication` hands out for AD FS stamps). Both are turned into
//! the one stored shape, [`Credential::Certificate`] with a PKCS#8 key, and the certificate's SHA-1
//! thumbprint is checked against the registered `certificateThumbprint`: a mismatch found here is
//! far cheaper than an `invalid_client` at the first collection run.
//!
//! Errors name the registration field (`certificate`, `certificatePassword`, `certificateThumbprint`,
//! `caCertificate`) and never quote key material or passwords.

use azs_core::registration::CredentialInput;
use azs_core::{Credential, Secret, ValidationErrors};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha1::{Digest, Sha1};

/// A client certificate that passed every check, ready to store.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// Certificate (leaf first, then any chain that came with it) and its PKCS#8 key.
    pub credential: Credential,
    /// SHA-1 of the leaf certificate's DER, 40 upper-case hex digits.
    pub thumbprint: String,
    pub subject: String,
    pub not_after: DateTime<Utc>,
}

/// The credential a registration brings, checked. `Ok(None)` for `credentialSecretName`: that
/// credential is already in the secret store and is read at collection time.
pub fn credential_from_registration(
    input: &CredentialInput,
    certificate_thumbprint: Option<&str>,
) -> Result<Option<Credential>, ValidationErrors> {
    match input {
        CredentialInput::ApplicationSecret(secret) => Ok(Some(Credential::ApplicationSecret(secret.clone()))),
        CredentialInput::Certificate { material, password } => {
            read_certificate(material, password.as_ref(), certificate_thumbprint).map(|c| Some(c.credential))
        }
        CredentialInput::ExistingSecret(_) => Ok(None),
    }
}

/// Reads a PEM or base64 PFX client certificate, matches its key, and checks the thumbprint when one
/// is given.
pub fn read_certificate(
    material: &Secret,
    password: Option<&Secret>,
    expected_thumbprint: Option<&str>,
) -> Result<ClientCertificate, ValidationErrors> {
    read_certificate_at(material, password, expected_thumbprint, Utc::now())
}

fn read_certificate_at(
    material: &Secret,
    password: Option<&Secret>,
    expected_thumbprint: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ClientCertificate, ValidationErrors> {
    let field_error = |field: &str, rule: String| {
        let mut errors = ValidationErrors::default();
        errors.push(field, rule);
        errors
    };
    let text = material.expose().trim();
    let (certificates, key) = if text.contains("-----BEGIN") {
        if password.is_some_and(|p| !p.is_empty()) {
            return Err(field_error(
                "certificatePassword",
                "only a PFX has a password; give the PEM private key unencrypted".into(),
            ));
        }
        read_pem(text).map_err(|rule| field_error("certificate", rule))?
    } else {
        read_pfx(text, password).map_err(|(field, rule)| field_error(field, rule))?
    };
    let leaf =
        LeafCertificate::matching(&certificates, &key).map_err(|rule| field_error("certificate", rule))?;

    if let Some(expected) = expected_thumbprint {
        let expected = normalize_thumbprint(expected);
        if expected != leaf.thumbprint {
            return Err(field_error(
                "certificateThumbprint",
                format!("does not match the certificate (its SHA-1 thumbprint is {})", leaf.thumbprint),
            ));
        }
    }
    if leaf.not_after < now {
        return Err(field_error(
            "certificate",
            format!("expired on {}", leaf.not_after.format("%Y-%m-%dT%H:%M:%SZ")),
        ));
    }

    // Leaf first, then the rest as given: the order `Credential::Certificate` promises.
    let mut pem = pem_certificate(&certificates[leaf.index]);
    for (i, der) in certificates.iter().enumerate() {
        if i != leaf.index {
            pem.push_str(&pem_certificate(der));
        }
    }
    let private_key_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| field_error("certificate", "the private key could not be re-encoded".into()))?;
    Ok(ClientCertificate {
        credential: Credential::Certificate {
            certificate_pem: pem,
            private_key_pem: Secret::new(private_key_pem.as_str()),
        },
        thumbprint: leaf.thumbprint,
        subject: leaf.subject,
        not_after: leaf.not_after,
    })
}

/// The DER certificates that came with a key (in the order given), and the key.
type CertificatesAndKey = (Vec<Vec<u8>>, RsaPrivateKey);

/// Certificates and the RSA key from one PEM text.
fn read_pem(text: &str) -> Result<CertificatesAndKey, String> {
    const NOT_PEM: &str = "must be PEM with the certificate and its private key, or a base64 PFX";
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err("the PEM private key is encrypted; give it unencrypted, or give a PFX with \
                    certificatePassword"
            .into());
    }
    let certificates = CertificateDer::pem_slice_iter(text.as_bytes())
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| NOT_PEM.to_owned())?;
    if certificates.is_empty() {
        return Err("the PEM has no certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    let key = match PrivateKeyDer::from_pem_slice(text.as_bytes()) {
        Ok(PrivateKeyDer::Pkcs8(der)) => RsaPrivateKey::from_pkcs8_der(der.secret_pkcs8_der()).ok(),
        Ok(PrivateKeyDer::Pkcs1(der)) => RsaPrivateKey::from_pkcs1_der(der.secret_pkcs1_der()).ok(),
        Ok(_) => return Err("the private key must be RSA (PKCS#8 or PKCS#1)".into()),
        Err(_) => {
            return Err("the PEM has no private key (-----BEGIN PRIVATE KEY----- or RSA PRIVATE KEY)".into());
        }
    }
    .ok_or_else(|| "the private key must be RSA (PKCS#8 or PKCS#1)".to_owned())?;
    Ok((certificates, key))
}

/// Certificates and the RSA key from a base64 PFX. `Err((field, rule))`.
fn read_pfx(text: &str, password: Option<&Secret>) -> Result<CertificatesAndKey, (&'static str, String)> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|_| {
        ("certificate", "must be PEM with the certificate and its private key, or a base64 PFX".to_owned())
    })?;
    let counts = crate::pfx_cost::iteration_counts(&bytes)
        .ok_or(("certificate", "is not a readable PFX".to_owned()))?;
    if let Some(rule) = crate::pfx_cost::refusal(&counts) {
        return Err(("certificate", rule));
    }
    let keystore = p12_keystore::KeyStore::from_pkcs12(&bytes, password.map(Secret::expose).unwrap_or(""))
        .map_err(|e| match e {
            p12_keystore::error::Error::MacError(_) => {
                ("certificatePassword", "does not open the PFX (wrong or missing password)".to_owned())
            }
            _ => ("certificate", "is not a readable PFX".to_owned()),
        })?;
    let (_, chain) = keystore
        .private_key_chain()
        .ok_or(("certificate", "the PFX holds no private key with its certificate".to_owned()))?;
    let key = RsaPrivateKey::from_pkcs8_der(chain.key())
        .map_err(|_| ("certificate", "the PFX's private key must be RSA".to_owned()))?;
    let certificates = chain.chain().iter().map(|c| c.as_der().to_vec()).collect();
    Ok((certificates, key))
}

/// The certificate that belongs to the private key.
struct LeafCertificate {
    index: usize,
    thumbprint: String,
    subject: String,
    not_after: DateTime<Utc>,
}

impl LeafCertificate {
    fn matching(certificates: &[Vec<u8>], key: &RsaPrivateKey) -> Result<Self, String> {
        let public = RsaPublicKey::from(key);
        let mut readable = false;
        for (index, der) in certificates.iter().enumerate() {
            let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { continue };
            readable = true;
            let spki = RsaPublicKey::from_public_key_der(cert.public_key().raw);
            if spki.is_ok_and(|k| k == public) {
                return Ok(Self {
                    index,
                    thumbprint: thumbprint_hex(der),
                    subject: cert.subject().to_string(),
                    not_after: DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                });
            }
        }
        Err(if readable {
            "no certificate matches the private key".into()
        } else {
            "the certificate is not a readable X.509 certificate".into()
        })
    }
}

/// SHA-1 of a DER certificate as Windows shows it: 40 upper-case hex digits.
pub fn thumbprint_hex(der: &[u8]) -> String {
    Sha1::digest(der).iter().map(|b| format!("{b:02X}")).collect()
}

/// The raw 20 SHA-1 bytes of a DER certificate (what `x5t` encodes).
pub(crate) fn thumbprint_bytes(der: &[u8]) -> [u8; 20] {
    Sha1::digest(der).into()
}

fn normalize_thumbprint(t: &str) -> String {
    t.chars().filter(|c| !c.is_whitespace() && *c != ':').collect::<String>().to_ascii_uppercase()
}

fn pem_certificate(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The certificates of a stamp's CA bundle (PEM), trusted in addition to the system roots.
pub fn parse_ca_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    match certificates {
        Ok(certs) if certs.is_empty() => errors
            .push("caCertificate", "must hold at least one PEM certificate (-----BEGIN CERTIFICATE-----)"),
        Ok(certs) => {
            for (i, der) in certs.iter().enumerate() {
                if x509_parser::parse_x509_certificate(der).is_err() {
                    errors.push(
                        "caCertificate",
                        format!("certificate {} is not a readable X.509 certificate", i + 1),
                    );
                }
            }
            return errors.into_result(certs);
        }
        Err(e) => errors.push("caCertificate", format!("is not valid PEM ({e})")),
    }
    Err(errors)
}

/// What a client assertion is signed with: the stored key, and the `x5t` of the certificate it
/// belongs to.
pub(crate) struct AssertionKey {
    pub key: rsa::pkcs1v15::SigningKey<sha2::Sha256>,
    /// base64url (no padding) of the certificate's raw SHA-1 digest: 27 characters.
    pub x5t: String,
    pub thumbprint: String,
}

impl AssertionKey {
    /// Loads a stored certificate credential. The error says what is wrong without quoting it.
    pub fn from_stored(certificate_pem: &str, private_key_pem: &Secret) -> Result<Self, String> {
        let mut text = String::with_capacity(certificate_pem.len() + private_key_pem.expose().len() + 1);
        text.push_str(certificate_pem);
        text.push('\n');
        text.push_str(private_key_pem.expose());
        let (certificates, key) = read_pem(&text).map_err(|rule| format!("stored certificate: {rule}"))?;
        let leaf = LeafCertificate::matching(&certificates, &key)
            .map_err(|rule| format!("stored certificate: {rule}"))?;
        Ok(Self {
            key: rsa::pkcs1v15::SigningKey::new(key),
            x5t: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(thumbprint_bytes(&certificates[leaf.index])),
            thumbprint: leaf.thumbprint,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A throw-away certificate or key of this crate's own `tests/fixtures` (the documented responses
    /// are the test kit's).
    pub(crate) fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
            .expect("fixture exists")
    }

    /// `openssl x509 -in client-cert.pem -noout -fingerprint -sha1`
    pub(crate) const CLIENT_THUMBPRINT: &str = "5115AFE04643131F78F92217C1E988F6712C228B";

    fn pem(key: &str) -> Secret {
        Secret::new(format!("{}{}", fixture("client-cert.pem"), fixture(key)))
    }

    fn fields(e: ValidationErrors) -> Vec<String> {
        e.0.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn reads_pem_with_a_pkcs8_or_pkcs1_key_and_computes_the_thumbprint() {
        for key in ["client-key-pkcs8.pem", "client-key-pkcs1.pem"] {
            let c = read_certificate(&pem(key), None, Some(CLIENT_THUMBPRINT)).unwrap();
            assert_eq!(c.thumbprint, CLIENT_THUMBPRINT);
            assert!(c.subject.contains("azs-usage-test-client"));
            let Credential::Certificate { certificate_pem, private_key_pem } = c.credential else {
                panic!("a certificate credential")
            };
            assert!(certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(private_key_pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"), "stored as PKCS#8");
        }
    }

    #[test]
    fn reads_a_base64_pfx_with_its_password_modern_and_legacy() {
        for pfx in ["client.pfx.b64", "client-legacy.pfx.b64"] {
            let c = read_certificate(
                &Secret::new(fixture(pfx)),
                Some(&Secret::new("fixture-password")),
                Some(&CLIENT_THUMBPRINT.to_lowercase()),
            )
            .unwrap_or_else(|e| panic!("{pfx}: {e}"));
            assert_eq!(c.thumbprint, CLIENT_THUMBPRINT);
        }
    }

    #[test]
    fn a_wrong_pfx_password_names_certificate_password() {
        let e = read_certificate(&Secret::new(fixture("client.pfx.b64")), Some(&Secret::new("nope")), None)
            .unwrap_err();
        assert_eq!(fields(e), vec!["certificatePassword"]);
    }

    #[test]
    fn a_thumbprint_of_another_certificate_names_certificate_thumbprint() {
        let e = read_certificate(&pem("client-key-pkcs8.pem"), None, Some(&"AB".repeat(20))).unwrap_err();
        assert_eq!(fields(e.clone()), vec!["certificateThumbprint"]);
        assert!(e.to_string().contains(CLIENT_THUMBPRINT), "says what the right thumbprint is");
    }

    #[test]
    fn garbage_or_a_key_of_another_certificate_names_certificate() {
        for material in [
            Secret::new("not a certificate at all"),
            Secret::new(fixture("client-cert.pem")),
            Secret::new(format!("{}{}", fixture("client-cert.pem"), fixture("other-key.pem"))),
        ] {
            let e = read_certificate(&material, None, None).unwrap_err();
            assert_eq!(fields(e), vec!["certificate"]);
        }
    }

    #[test]
    fn errors_never_quote_the_key() {
        let key = fixture("other-key.pem");
        let e = read_certificate(&Secret::new(format!("{}{key}", fixture("client-cert.pem"))), None, None)
            .unwrap_err();
        let line = key.lines().nth(1).unwrap();
        assert!(!e.to_string().contains(line));
    }

    #[test]
    fn an_expired_certificate_is_refused() {
        let later: DateTime<Utc> = "2200-01-01T00:00:00Z".parse().unwrap();
        let e = read_certificate_at(&pem("client-key-pkcs8.pem"), None, None, later).unwrap_err();
        assert_eq!(fields(e.clone()), vec!["certificate"]);
        assert!(e.to_string().contains("expired"));
    }

    #[test]
    fn the_pem_leaf_is_the_certificate_of_the_key_wherever_it_stands() {
        let material = format!(
            "{}{}{}",
            fixture("other-cert.pem"),
            fixture("client-cert.pem"),
            fixture("client-key-pkcs8.pem")
        );
        let c = read_certificate(&Secret::new(material), None, None).unwrap();
        assert_eq!(c.thumbprint, CLIENT_THUMBPRINT);
        let Credential::Certificate { certificate_pem, .. } = c.credential else { unreachable!() };
        assert_eq!(certificate_pem.matches("BEGIN CERTIFICATE").count(), 2, "the chain is kept");
        assert_eq!(
            thumbprint_hex(
                CertificateDer::pem_slice_iter(certificate_pem.as_bytes()).next().unwrap().unwrap().as_ref()
            ),
            CLIENT_THUMBPRINT,
            "leaf first"
        );
    }

    #[test]
    fn registration_inputs_become_credentials() {
        let secret = CredentialInput::ApplicationSecret(Secret::new("s3cret"));
        assert_eq!(
            credential_from_registration(&secret, None).unwrap(),
            Some(Credential::ApplicationSecret(Secret::new("s3cret")))
        );
        let existing = CredentialInput::ExistingSecret("stamps/eu-1".into());
        assert_eq!(credential_from_registration(&existing, None).unwrap(), None);
    }

    #[test]
    fn ca_bundles_are_read_and_garbage_names_ca_certificate() {
        let both = format!("{}{}", fixture("client-cert.pem"), fixture("other-cert.pem"));
        assert_eq!(parse_ca_bundle(&both).unwrap().len(), 2);
        for bad in ["", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"] {
            assert_eq!(fields(parse_ca_bundle(bad).unwrap_err()), vec!["caCertificate"], "{bad:?}");
        }
    }

    #[test]
    fn the_assertion_key_carries_x5t_as_base64url_of_the_raw_digest() {
        let k = AssertionKey::from_stored(
            &fixture("client-cert.pem"),
            &Secret::new(fixture("client-key-pkcs1.pem")),
        )
        .unwrap();
        assert_eq!(k.x5t.len(), 27);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&k.x5t).unwrap();
        assert_eq!(raw.len(), 20);
        assert_eq!(raw.iter().map(|b| format!("{b:02X}")).collect::<String>(), CLIENT_THUMBPRINT);
    }
}
