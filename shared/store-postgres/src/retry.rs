//! Which failures are worth another attempt on a fresh connection, and the back-off between attempts.
//!
//! Tried again: serialization failures (40001) and deadlocks (40P01), where the server rolled the
//! transaction back and the same work may succeed next time; a server shutting down or still starting
//! (57P01-57P03, a failover); any connection exception (class 08) or a connection that closed under
//! the call; and a pool that could not open a connection. After connection loss in the middle of a
//! commit the first attempt may have committed: a repeated window commit is then fenced (the watermark
//! moved) and writes nothing twice, since rows are keyed and the watermark checked.

use deadpool_postgres::PoolError;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// SQLSTATEs after which the same transaction may succeed.
const TRANSIENT_STATES: &[&SqlState] = &[
    &SqlState::T_R_SERIALIZATION_FAILURE,
    &SqlState::T_R_DEADLOCK_DETECTED,
    &SqlState::ADMIN_SHUTDOWN,
    &SqlState::CRASH_SHUTDOWN,
    &SqlState::CANNOT_CONNECT_NOW,
    &SqlState::TOO_MANY_CONNECTIONS,
];

pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if tls_refusal(e).is_some() {
        return false;
    }
    match e.code() {
        Some(code) => TRANSIENT_STATES.contains(&code) || code.code().starts_with("08"),
        // No SQLSTATE: the failure was the connection's (I/O, TLS, a closed socket), not the server's.
        None => true,
    }
}

/// The TLS library's refusal inside `e`, if the failure is one that is the same on every attempt:
/// the server's certificate rejected (an issuer not trusted, a name it does not hold, expired), no TLS
/// version or cipher suite in common, or the server refusing the handshake with an alert. Retried, it
/// only delays the real reason by the whole back-off. tokio-postgres keeps the TLS connector's error as
/// its source, and tokio-rustls hands rustls's error over inside an `io::Error` (whose own `source()`
/// skips it, so it is looked for with `get_ref`).
pub(crate) fn tls_refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(error) = next {
        let rustls_error = error.downcast_ref::<rustls::Error>().or_else(|| {
            error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(
            refusal @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::AlertReceived(_)
            | rustls::Error::NoCertificatesPresented),
        ) = rustls_error
        {
            return Some(refusal);
        }
        next = error.source();
    }
    None
}

pub(crate) fn is_transient_pool(e: &PoolError) -> bool {
    match e {
        PoolError::Backend(e) => is_transient(e),
        PoolError::Timeout(_) => true,
        PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => false,
    }
}

/// How often and how patiently to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About 30 s in all: long enough for a managed server's failover, short enough for a function.
    fn default() -> Self {
        Self { attempts: 6, first_delay: Duration::from_millis(200), max_delay: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    /// No retries (tests of failure reporting).
    pub fn none() -> Self {
        Self { attempts: 1, first_delay: Duration::ZERO, max_delay: Duration::ZERO }
    }

    /// The wait before attempt `next` (2 is the first retry): doubling from `first_delay`, capped.
    pub fn delay_before(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(16);
        self.first_delay.saturating_mul(1 << doublings).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let waits: Vec<u128> = (2..=8).map(|n| p.delay_before(n).as_millis()).collect();
        assert_eq!(waits, vec![200, 400, 800, 1600, 3200, 6400, 8000]);
    }

    #[test]
    fn a_certificate_the_client_refuses_is_not_retried_a_network_failure_is() {
        // As tokio-postgres holds a TLS failure: its source is tokio-rustls's io::Error, which carries
        // rustls's error inside.
        use rustls::{AlertDescription, CertificateError};
        let handshake = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        for refusal in [
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
        ] {
            let io = handshake(refusal.clone());
            assert_eq!(tls_refusal(&io), Some(&refusal));
        }
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(tls_refusal(&reset), None);
        let corrupt = handshake(rustls::Error::DecryptError);
        assert_eq!(tls_refusal(&corrupt), None, "only refusals that repeat are permanent");
    }

    #[tokio::test]
    async fn a_server_refusing_the_tls_handshake_fails_the_connect_at_once() {
        // Given a server that accepts the SSLRequest, then answers the ClientHello with a fatal
        // handshake_failure alert (as one with no TLS version or cipher suite in common does)
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut ssl_request = [0u8; 8];
            socket.read_exact(&mut ssl_request).await.unwrap();
            socket.write_all(b"S").await.unwrap();
            let mut record_header = [0u8; 5];
            let _ = socket.read_exact(&mut record_header).await;
            socket.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]).await.unwrap();
            let _ = socket.read(&mut [0u8; 1024]).await;
        });
        let config =
            crate::PostgresConfig::parse(&format!("postgres://u@127.0.0.1:{port}/d?sslmode=require"))
                .unwrap();
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config.rustls().unwrap());

        // When the store connects, then the failure is the TLS refusal, not retried, and says so
        let e = config.client.connect(tls).await.err().expect("the handshake is refused");
        assert!(matches!(tls_refusal(&e), Some(rustls::Error::AlertReceived(_))), "{e:?}");
        assert!(!is_transient(&e), "{e}");
        assert!(crate::describe(&e).contains("not retried"), "{}", crate::describe(&e));
    }

    #[test]
    fn serialization_failures_and_deadlocks_are_transient() {
        assert!(TRANSIENT_STATES.contains(&&SqlState::T_R_SERIALIZATION_FAILURE));
        assert!(TRANSIENT_STATES.contains(&&SqlState::T_R_DEADLOCK_DETECTED));
    }
}
