//! Certificates: the simulator's throw-away CA and the server certificates it signs, the
//! registered client certificates the token endpoint checks assertions against, and
//! [`generate_test_certificate`] for tests that need a client certificate of their own.

use std::sync::Arc;

use anyhow::Context as _;
use aws_lc_rs::encoding::AsDer as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha1::{Digest as _, Sha1};
use x509_cert::der::{DecodePem as _, Encode as _};

/// The CA every stamp's server certificate chains to. Clients trust [`Self::pem`] only.
pub(crate) struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl CertificateAuthority {
    pub fn new() -> anyhow::Result<Self> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "stamp-sim throw-away root CA");
        params.distinguished_name.push(DnType::OrganizationName, "azs-usage stamp simulator");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let certificate = params.self_signed(&key).context("self-signing the CA")?;
        Ok(Self { pem: certificate.pem(), issuer: Issuer::new(params, key) })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A TLS server configuration for `127.0.0.1` / `localhost`, with a fresh leaf certificate
    /// signed by this CA (rustls refuses a CA certificate as the server's own). HTTP/1.1 only.
    pub fn server_config(&self, stamp_name: &str) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let key = KeyPair::generate().context("generating a server key")?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, stamp_name);
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let certificate = params.signed_by(&key, &self.issuer).context("signing a server cert")?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(certificate.der().to_vec())], key_der)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The app's registered certificate as the token endpoint needs it.
pub(crate) struct RegisteredCertificate {
    /// SHA-1 of the certificate DER: what `x5t` must carry (base64url of these bytes).
    pub thumbprint: [u8; 20],
    /// RSA modulus, big-endian.
    pub modulus: Vec<u8>,
    /// RSA public exponent, big-endian.
    pub exponent: Vec<u8>,
}

impl RegisteredCertificate {
    /// Parses the first certificate of a PEM bundle; its key must be RSA.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let certificate = x509_cert::Certificate::from_pem(pem.trim().as_bytes())
            .context("the registered certificate is not a PEM X.509 certificate")?;
        let der = certificate.to_der()?;
        let spki_der = certificate.tbs_certificate.subject_public_key_info.to_der()?;
        let public_key = rsa::RsaPublicKey::from_public_key_der(&spki_der)
            .context("the registered certificate's key is not RSA")?;
        Ok(Self {
            thumbprint: Sha1::digest(&der).into(),
            modulus: public_key.n().to_bytes_be(),
            exponent: public_key.e().to_bytes_be(),
        })
    }

    pub fn thumbprint_hex(&self) -> String {
        hex_upper(&self.thumbprint)
    }
}

/// A client certificate made for tests: self-signed, RSA 2048, SHA-256.
#[derive(Clone, Debug)]
pub struct TestCertificate {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// Its private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key_pem: String,
    /// SHA-1 of the certificate DER, 40 upper-case hex digits (Windows' "thumbprint").
    pub thumbprint_hex: String,
    certificate_der: Vec<u8>,
    private_key_der: Vec<u8>,
}

impl TestCertificate {
    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The correct `x5t` header value: base64url (no padding) of the raw SHA-1 digest bytes.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha1::digest(&self.certificate_der))
    }

    /// The certificate and key as a PKCS#12 (PFX) file, base64 (standard alphabet, padded),
    /// protected by `password` (AES-256 / HMAC-SHA256 with 2,048 PBKDF iterations each, as
    /// common PFX exports use; the crate's default of 10,000 is slow in debug builds).
    pub fn pfx_base64(&self, password: &str) -> anyhow::Result<String> {
        let mut store = p12_keystore::KeyStore::new();
        let certificate = p12_keystore::Certificate::from_der(&self.certificate_der)
            .map_err(|e| anyhow::anyhow!("certificate for PFX: {e}"))?;
        let thumbprint = Sha1::digest(&self.certificate_der).to_vec();
        let chain =
            p12_keystore::PrivateKeyChain::new(self.private_key_der.clone(), thumbprint, vec![certificate]);
        store.add_entry("client", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
        let pfx = store
            .writer(password)
            .encryption_iterations(2048)
            .mac_iterations(2048)
            .write()
            .map_err(|e| anyhow::anyhow!("writing PFX: {e}"))?;
        Ok(STANDARD.encode(pfx))
    }
}

/// Makes a self-signed RSA 2048 client certificate with subject `CN={common_name}`.
///
/// ring cannot generate RSA keys and the pure-Rust `rsa` crate takes seconds per key in debug
/// builds, so the key comes from aws-lc-rs (already in the workspace through reqwest's rustls)
/// and is handed to rcgen as PKCS#8.
pub fn generate_test_certificate(common_name: &str) -> anyhow::Result<TestCertificate> {
    let rsa_key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
        rsa_key.as_der().map_err(|_| anyhow::anyhow!("RSA key encoding failed"))?;
    let private_key_der = pkcs8.as_ref().to_vec();
    let private_key_pem = pem_encode("PRIVATE KEY", &private_key_der);
    let key_pair = KeyPair::from_pem(&private_key_pem).context("rcgen rejected the RSA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = params.self_signed(&key_pair)?;
    let certificate_der = certificate.der().to_vec();
    Ok(TestCertificate {
        certificate_pem: certificate.pem(),
        private_key_pem,
        thumbprint_hex: hex_upper(&Sha1::digest(&certificate_der)),
        certificate_der,
        private_key_der,
    })
}

/// PEM armour with 64-character lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
