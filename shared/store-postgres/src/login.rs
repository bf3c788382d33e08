//! Logging in with a short-lived token instead of a fixed password: Microsoft Entra ID for Azure
//! Database for PostgreSQL (a managed identity's access token is the password), an AWS RDS IAM
//! authentication token for RDS and Aurora PostgreSQL, or any other [`PasswordSource`]. The pool asks the source on every new connection, so a connection never logs in
//! with an expired token; the source caches and refreshes as it sees fit.

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use deadpool_postgres::Connect;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};

/// The scope of Azure Database for PostgreSQL's Entra ID tokens.
pub const ENTRA_ID_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

/// Where a connection's password comes from when it is not in the URL. Errors never carry a secret.
#[async_trait]
pub trait PasswordSource: Send + Sync {
    async fn password(&self) -> Result<String, String>;
}

/// A managed identity's Entra ID token (the system-assigned identity, or the user-assigned one with
/// this client id).
pub struct EntraIdToken {
    credential: Arc<dyn azure_core::credentials::TokenCredential>,
}

impl EntraIdToken {
    pub fn managed_identity(client_id: Option<String>) -> Result<Self, String> {
        use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(UserAssignedId::ClientId),
            ..Default::default()
        };
        let credential =
            ManagedIdentityCredential::new(Some(options)).map_err(|e| format!("managed identity: {e}"))?;
        Ok(Self { credential })
    }
}

#[async_trait]
impl PasswordSource for EntraIdToken {
    async fn password(&self) -> Result<String, String> {
        let token = self
            .credential
            .get_token(&[ENTRA_ID_SCOPE], None)
            .await
            .map_err(|e| format!("Entra ID token for Azure Database for PostgreSQL: {e}"))?;
        Ok(token.token.secret().to_owned())
    }
}

/// How long an RDS IAM authentication token is valid: 15 minutes, the most RDS accepts. It only
/// has to last until the login; the connection then stays open however long the pool keeps it.
pub const RDS_TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// An AWS RDS IAM authentication token (RDS and Aurora PostgreSQL): a SigV4-presigned `connect`
/// action for `rds-db`, made afresh for every new connection from the credentials of the process
/// (the Lambda role through the SDK's default chain). Signing is local (an HMAC); the credentials
/// provider caches and refreshes the role's credentials.
pub struct RdsIamToken {
    /// `host:port` exactly as the connection names the server: the token is only valid for it.
    endpoint: String,
    user: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl RdsIamToken {
    pub fn new(
        host: &str,
        port: u16,
        user: &str,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> Self {
        Self {
            endpoint: format!("{host}:{port}"),
            user: user.to_owned(),
            region: region.to_owned(),
            credentials,
        }
    }
}

#[async_trait]
impl PasswordSource for RdsIamToken {
    async fn password(&self) -> Result<String, String> {
        use aws_credential_types::provider::ProvideCredentials;
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| format!("AWS credentials for the RDS IAM token: {e}"))?;
        rds_auth_token(&self.endpoint, &self.user, &self.region, credentials, SystemTime::now())
    }
}

/// The RDS IAM authentication token for `user` at `endpoint` (`host:port`), signed at `at`: what
/// AWS's SDKs make (`generate_db_auth_token`), `host:port/?Action=connect&DBUser=..&X-Amz-..`
/// without a scheme. The error never carries the secret key or the signature.
pub fn rds_auth_token(
    endpoint: &str,
    user: &str,
    region: &str,
    credentials: aws_credential_types::Credentials,
    at: SystemTime,
) -> Result<String, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(RDS_TOKEN_LIFETIME);
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing the RDS IAM token: {e}"))?
        .into();
    let mut url = url::Url::parse(&format!("https://{endpoint}/"))
        .map_err(|e| format!("the RDS IAM token's endpoint {endpoint}: {e}"))?;
    url.query_pairs_mut().append_pair("Action", "connect").append_pair("DBUser", user);
    // The canonical request hashes an empty payload (botocore's presigner does the same for
    // `rds-db`; S3's presigned URLs are the ones that say UNSIGNED-PAYLOAD).
    let request = SignableRequest::new("GET", url.as_str(), std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("signing the RDS IAM token: {e}"))?;
    let (instructions, _signature) =
        sign(request, &params).map_err(|e| format!("signing the RDS IAM token: {e}"))?.into_parts();
    // The signature last, as botocore and the other SDKs write it (aws-sigv4 puts the session token
    // after it; the server reads the query either way).
    let (signature, signed): (Vec<_>, Vec<_>) =
        instructions.params().iter().partition(|(name, _)| *name == "X-Amz-Signature");
    // Written with SigV4's own encoding (RFC 3986: only A-Z a-z 0-9 - _ . ~ as they are, a space as
    // %20), as botocore writes it and as the signature's canonical query has it, not the URL's
    // form encoding (a space as `+`, `~` as %7E, `*` bare), which the server need not read back as
    // the same user.
    let authority = &url[url::Position::BeforeHost..url::Position::AfterPath];
    let query: Vec<String> = [("Action", "connect"), ("DBUser", user)]
        .into_iter()
        .chain(signed.into_iter().chain(signature).map(|(name, value)| (*name, value.as_ref())))
        .map(|(name, value)| format!("{}={}", sigv4_encode(name), sigv4_encode(value)))
        .collect();
    Ok(format!("{authority}?{}", query.join("&")))
}

/// `value` percent-encoded as SigV4 encodes query names and values (RFC 3986's unreserved characters
/// kept, every other byte as %XX in upper-case hex).
fn sigv4_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Opens the pool's connections: the password from the source (when there is one), then TLS or not.
pub(crate) struct Connector<T> {
    pub tls: T,
    pub password: Option<Arc<dyn PasswordSource>>,
    /// Why the last token could not be had: the pool only carries tokio-postgres errors, so the store
    /// reads the cause here (see `PostgresStore::run`).
    pub token_failure: Arc<Mutex<Option<String>>>,
}

impl<T> Connect for Connector<T>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + '_>>
    {
        let tls = self.tls.clone();
        let mut config = pg_config.clone();
        let source = self.password.clone();
        let failure = Arc::clone(&self.token_failure);
        Box::pin(async move {
            if let Some(source) = source {
                match source.password().await {
                    Ok(password) => {
                        config.password(password);
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    Err(e) => {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        // A tokio-postgres error without a network round trip: a configuration
                        // with no host. The store reports the token failure recorded above instead.
                        return match tokio_postgres::Config::new().connect(tokio_postgres::NoTls).await {
                            Err(e) => Err(e),
                            Ok(_) => unreachable!("a configuration without a host never connects"),
                        };
                    }
                }
            }
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "PostgreSQL connection ended");
                }
            });
            Ok((client, task))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    /// AWS's documented example key pair, and a fixed signing time.
    const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const ENDPOINT: &str = "usage.cluster-c1a2b3.eu-west-1.rds.amazonaws.com:5432";

    fn signed_at() -> SystemTime {
        // 2026-12-07T12:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_644_800)
    }

    fn credentials(session_token: Option<&str>) -> Credentials {
        Credentials::new(ACCESS_KEY, SECRET_KEY, session_token.map(str::to_owned), None, "test")
    }

    /// What botocore 1.44's `generate_db_auth_token` gives for AWS's example keys at `signed_at`, its
    /// clock fixed to that instant:
    /// `client("rds", region_name="eu-west-1", ...).generate_db_auth_token(host, 5432, "azs_usage")`.
    const BOTOCORE_SIGNED: &str = "usage.cluster-c1a2b3.eu-west-1.rds.amazonaws.com:5432/?Action=connect\
        &DBUser=azs_usage&X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261207%2Feu-west-1%2Frds-db%2Faws4_request\
        &X-Amz-Date=20261207T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host";

    #[test]
    fn an_rds_token_is_the_one_botocore_makes_for_the_same_keys_and_time() {
        // Given AWS's example keys and a fixed time, with and without the session token a Lambda
        // role's temporary credentials carry, when the token is made, then it is byte for byte
        // botocore's (the session token signed into it).
        let session = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN/+=";
        let cases = [
            (
                None,
                "&X-Amz-Signature=b08761301a607d238c23440bf5aee14e4ea8d2612554b6bbe7a266a9009b994a"
                    .to_owned(),
            ),
            (
                Some(session),
                "&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLESESSIONTOKEN%2F%2B%3D\
                 &X-Amz-Signature=a0cb759089e48516f3e0124537acfe17c9642786e93f0a146efc387c38366cb2"
                    .to_owned(),
            ),
        ];
        for (session_token, rest) in cases {
            let token =
                rds_auth_token(ENDPOINT, "azs_usage", "eu-west-1", credentials(session_token), signed_at())
                    .unwrap();
            assert_eq!(token, format!("{BOTOCORE_SIGNED}{rest}"));
        }
    }

    #[test]
    fn a_user_name_outside_the_unreserved_characters_is_encoded_as_botocore_encodes_it() {
        // Given a role name with a space, a tilde and an asterisk (legal for a PostgreSQL role), when
        // its token is made, then it is botocore 1.43's byte for byte: SigV4's encoding (%20, ~ as it
        // is, %2A), not a form's (+, %7E, * as it is), so the server reads back the user it signed.
        let token =
            rds_auth_token(ENDPOINT, "app user~*x", "eu-west-1", credentials(None), signed_at()).unwrap();
        assert_eq!(
            token,
            "usage.cluster-c1a2b3.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app%20user~%2Ax\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261207%2Feu-west-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20261207T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=df1e1c75994259175125efda842bd3a45db6e87b374439cc8eab9f176ffd8e7f"
        );
    }

    #[test]
    fn the_rds_token_signature_follows_the_documented_sigv4_steps() {
        // The signature worked out by hand from AWS's SigV4 documentation: the canonical request
        // (query sorted, host the only signed header, the empty payload's SHA-256), the string to
        // sign, and the key derived through date, region, service and "aws4_request".
        use hmac::{Hmac, Mac};
        use sha2::{Digest, Sha256};
        let canonical_request = "GET\n/\n\
            Action=connect&DBUser=azs_usage&X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261207%2Feu-west-1%2Frds-db%2Faws4_request\
            &X-Amz-Date=20261207T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\n\
            host:usage.cluster-c1a2b3.eu-west-1.rds.amazonaws.com:5432\n\n\
            host\n\
            e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n20261207T120000Z\n20261207/eu-west-1/rds-db/aws4_request\n{}",
            hex(&Sha256::digest(canonical_request))
        );
        let hmac = |key: &[u8], data: &str| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            mac.update(data.as_bytes());
            mac.finalize().into_bytes().to_vec()
        };
        let mut key = hmac(format!("AWS4{SECRET_KEY}").as_bytes(), "20261207");
        for part in ["eu-west-1", "rds-db", "aws4_request"] {
            key = hmac(&key, part);
        }
        let expected = hex(&hmac(&key, &string_to_sign));

        let token =
            rds_auth_token(ENDPOINT, "azs_usage", "eu-west-1", credentials(None), signed_at()).unwrap();
        let signature = token.rsplit_once("X-Amz-Signature=").unwrap().1;
        assert_eq!(signature, expected);
    }

    #[tokio::test]
    async fn a_new_rds_token_is_signed_for_every_login_and_never_shows_the_secret_key() {
        // Given a provider of fixed credentials, when two connections log in a second apart, then each
        // gets its own token for the URL's host, port and user, valid 15 minutes, without the secret.
        let source = RdsIamToken::new(
            "usage.cluster-c1a2b3.eu-west-1.rds.amazonaws.com",
            5432,
            "azs_usage",
            "eu-west-1",
            SharedCredentialsProvider::new(credentials(None)),
        );
        let first = source.password().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let second = source.password().await.unwrap();
        assert_ne!(first, second, "each login signs at its own time");
        for token in [&first, &second] {
            assert!(token.starts_with(&format!("{ENDPOINT}/?Action=connect&DBUser=azs_usage&")), "{token}");
            assert!(token.contains("&X-Amz-Expires=900&"));
            assert!(!token.contains(SECRET_KEY) && !token.contains("wJalrXUtnFEMI"));
        }
    }
}
