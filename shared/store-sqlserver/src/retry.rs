//! Transient failures (Azure SQL moving a database, throttling, deadlocks) and the back-off between
//! attempts.
//!
//! An operation is tried again when the server answered with one of [`TRANSIENT_ERRORS`] (the attempt
//! failed and its transaction was rolled back: `XACT_ABORT` is on) or when no connection could be
//! opened. A connection that breaks in the middle of an operation is not retried: whether its
//! transaction committed is unknown, so the caller hears `Unavailable` and the next run decides (a
//! window commit is safe to repeat: its rows are keyed and its watermark fenced).

use std::time::Duration;

/// Server error numbers after which the same request may succeed. The list Microsoft.Data.SqlClient's
/// retry providers start from (`SqlConfigurableRetryFactory`):
/// <https://learn.microsoft.com/en-us/dotnet/api/microsoft.data.sqlclient.sqlconfigurableretryfactory>;
/// see also Azure SQL's "transient fault error messages":
/// <https://learn.microsoft.com/en-us/azure/azure-sql/database/troubleshoot-common-errors-issues>.
pub const TRANSIENT_ERRORS: &[u32] = &[
    1204,  // the engine cannot obtain a LOCK resource at this time
    1205,  // chosen as deadlock victim
    1222,  // lock request time-out period exceeded
    4060,  // cannot open the database requested by the login (e.g. serverless resuming)
    4221,  // login to a readable secondary failed while waiting for row versioning
    10928, // resource limit reached (workers, sessions)
    10929, // server too busy for this database's requests
    40143, // the service encountered an error processing the request
    40197, // the service encountered an error processing the request (reconfiguration, failover)
    40501, // the service is currently busy
    40540, // the service encountered an error processing the request
    40613, // database not currently available (moving, failing over, resuming)
    49918, // not enough resources to process the request
    49919, // too many create or update operations in progress
    49920, // too many operations in progress
];

pub(crate) fn is_transient_server_error(e: &tiberius::error::Error) -> bool {
    e.code().is_some_and(|code| TRANSIENT_ERRORS.contains(&code))
}

/// Whether the connection itself failed (as opposed to the server refusing a statement): the session
/// must not be reused.
pub(crate) fn breaks_connection(e: &tiberius::error::Error) -> bool {
    use tiberius::error::Error::*;
    matches!(e, Io { .. } | Tls(_) | Protocol(_) | Routing { .. } | Encoding(_) | Utf8 | Utf16)
}

/// A TLS failure in words an operator can act on: which certificate problem it is, and the fix, then
/// the TLS library's own text (tiberius passes rustls's certificate error through `Error::Tls`, followed
/// by remedies phrased as its API calls, which are cut off here).
pub(crate) fn certificate_problem(detail: &str) -> String {
    let detail = detail.split(" To connect anyway").next().unwrap_or(detail).trim();
    let problem = if detail.contains("not valid for any names") {
        "the server's certificate holds no subjectAltName, and rustls matches the host only against \
         subjectAltName (never the subject's CN). SQL Server's auto-generated self-signed certificate is \
         such a certificate, so trusting it with TrustServerCertificateCA cannot work: install a \
         certificate whose subjectAltName holds the server's DNS name (see the store README, \
         \"Certificates\")"
    } else if detail.contains("not valid for name") || detail.contains("NotValidForName") {
        "the server's certificate does not hold the host name connected to: connect by a name it holds, \
         or set HostNameInCertificate to one of them"
    } else if detail.contains("UnknownIssuer") {
        "the server's certificate is not issued by a CA this machine trusts: give the CA (PEM) with \
         TrustServerCertificateCA=<path> or AZS_USAGE_DATABASE_CA"
    } else if detail.contains("expired") || detail.contains("Expired") {
        "the server's certificate has expired: renew it on the server"
    } else if detail.contains("not valid yet") || detail.contains("NotValidYet") {
        "the server's certificate is not valid yet: check the clocks of server and client"
    } else if detail.contains("UnsupportedCertVersion") {
        "the server's certificate is an old X.509 version rustls refuses (as SQL Server's auto-generated \
         one can be): install a certificate issued for the server's DNS name"
    } else {
        "the TLS handshake or the trusted CA file failed"
    };
    format!("{problem}. Not retried: a certificate does not change between attempts. ({detail})")
}

/// A connect-time I/O error that is a TLS failure or an unusable CA, in words with the fix; `None` for
/// a network failure (refused, reset, timed out), which may pass. tokio-rustls hands every rustls
/// error of the handshake over as `InvalidData` (tokio-rustls 0.26, `common/mod.rs`), and tiberius
/// 0.13 reads the CA file and the platform's roots into `InvalidData` / `NotFound` errors of its own
/// (`client/tls_stream/certs.rs`, `ensure_base_or_extra`). None of these changes between attempts:
/// retried, they only delay the real reason by the whole back-off (~30 s).
pub(crate) fn tls_io_problem(kind: std::io::ErrorKind, message: &str) -> Option<String> {
    use std::io::ErrorKind;
    let ca_file = [
        "Could not read certificate",
        "Failed to parse PEM certificate",
        "contains an invalid certificate",
        "contained no usable certificates",
    ];
    let platform_roots = ["no usable CA certificates found", "could not load platform certificates"];
    let fix = if (kind == ErrorKind::InvalidData && ca_file.iter().any(|m| message.contains(m)))
        || (kind == ErrorKind::InvalidInput && message.contains("unsupported file-extension"))
    {
        "the trusted CA (TrustServerCertificateCA or AZS_USAGE_DATABASE_CA) cannot be used: give a \
         certificate file this process can read, PEM named .pem or .crt, or DER named .der"
    } else if kind == ErrorKind::NotFound && platform_roots.iter().any(|m| message.contains(m)) {
        "this machine has no trusted CA certificates: install the system's CA bundle (ca-certificates) or \
         give the server's CA with TrustServerCertificateCA or AZS_USAGE_DATABASE_CA"
    } else if kind != ErrorKind::InvalidData {
        return None;
    } else if message.contains("fatal alert") {
        "the server refused the TLS handshake: check that it offers TLS 1.2 or 1.3 (SQL Server 2016 and \
         later, or the TLS 1.2 update), and, for Encrypt=Strict, that it is SQL Server 2022 or later"
    } else if message.contains("peer is incompatible") {
        "the server and this client share no TLS version or cipher suite: the client speaks TLS 1.2 and \
         1.3 only, so enable TLS 1.2 on the server"
    } else {
        "the TLS handshake failed"
    };
    Some(format!("TLS failed, {fix}. Not retried: it fails the same way on every attempt. ({message})"))
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
    /// About 30 s in all: long enough for a failover or a serverless database to resume (Microsoft
    /// suggests waiting at least 5 s before retrying 40613), short enough for a 5-minute function.
    fn default() -> Self {
        Self { attempts: 5, first_delay: Duration::from_secs(2), max_delay: Duration::from_secs(16) }
    }
}

impl RetryPolicy {
    /// No retries (tests).
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
    fn the_documented_azure_sql_transient_errors_are_listed() {
        for code in [40613, 40501, 49918, 4060, 40197, 10928, 10929, 4221, 1205] {
            assert!(TRANSIENT_ERRORS.contains(&code), "{code}");
        }
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (2..=6).map(|n| p.delay_before(n).as_secs()).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 16]);
        assert_eq!(p.delay_before(1000), p.max_delay);
    }

    #[test]
    fn io_failures_break_the_connection_server_refusals_do_not() {
        let io =
            tiberius::error::Error::Io { kind: std::io::ErrorKind::ConnectionReset, message: "reset".into() };
        assert!(breaks_connection(&io));
        assert!(!is_transient_server_error(&io));
        let conversion = tiberius::error::Error::Conversion("x".into());
        assert!(!breaks_connection(&conversion));
    }

    /// Messages as tiberius 0.13 builds them from rustls 0.23's certificate errors.
    fn rejected(cert_err: &str) -> String {
        format!(
            "the server's certificate was rejected during the TLS handshake: {cert_err}. To connect anyway \
             you can: (1) trust a specific CA certificate with `Config::trust_cert_ca(path)`"
        )
    }

    #[test]
    fn each_certificate_problem_is_named_with_its_fix() {
        let no_san = rejected(
            "invalid peer certificate: certificate not valid for name \"db.example\"; certificate is not \
             valid for any names (according to its subjectAltName extension)",
        );
        let problem = certificate_problem(&no_san);
        assert!(
            problem.contains("holds no subjectAltName") && problem.contains("auto-generated"),
            "{problem}"
        );
        assert!(!problem.contains("Config::trust_cert_ca"), "tiberius's API advice is cut off: {problem}");
        let other_name = rejected(
            "invalid peer certificate: certificate not valid for name \"10.0.0.4\"; certificate is only valid \
             for db.example",
        );
        assert!(certificate_problem(&other_name).contains("HostNameInCertificate"));
        let unknown = rejected("invalid peer certificate: UnknownIssuer");
        assert!(certificate_problem(&unknown).contains("TrustServerCertificateCA"));
        let expired = rejected("invalid peer certificate: certificate expired: verification time 2");
        assert!(certificate_problem(&expired).contains("has expired"));
    }

    #[test]
    fn a_tls_failure_at_connect_is_permanent_and_a_network_failure_transient() {
        let tls = tiberius::error::Error::Tls(rejected("invalid peer certificate: UnknownIssuer"));
        let failure = crate::session::connect_failure("db.example:1433", &tls);
        assert!(!failure.is_transient(), "a certificate is the same on the next attempt");
        let message = azs_core::ports::StoreError::from(failure).to_string();
        assert!(message.contains("db.example:1433") && message.contains("not issued by a CA"), "{message}");
        let reset =
            tiberius::error::Error::Io { kind: std::io::ErrorKind::ConnectionReset, message: "reset".into() };
        assert!(crate::session::connect_failure("db.example:1433", &reset).is_transient());
    }

    #[test]
    fn tls_failures_that_tiberius_reports_as_io_errors_are_permanent_and_named() {
        use std::io::ErrorKind::{ConnectionRefused, InvalidData, NotFound, TimedOut, UnexpectedEof};
        // As tokio-rustls wraps rustls 0.23's errors, and as tiberius 0.13 words its CA failures.
        let cases = [
            (InvalidData, "received fatal alert: HandshakeFailure", "TLS 1.2 or 1.3"),
            (InvalidData, "peer is incompatible: NoCipherSuitesInCommon", "enable TLS 1.2"),
            (InvalidData, "received corrupt message of type InvalidContentType", "TLS handshake failed"),
            (
                InvalidData,
                "Could not read certificate /etc/ca.pem: No such file or directory (os error 2)",
                "can read",
            ),
            (InvalidData, "Failed to parse PEM certificate /etc/ca.pem: ...", "PEM named .pem"),
            // A DER file named .crt reads as PEM with no certificate in it.
            (
                InvalidData,
                "the CA source `/etc/DigiCertGlobalRootG2.crt` contained no usable certificates",
                "DER named .der",
            ),
            (NotFound, "no usable CA certificates found in the platform trust store", "ca-certificates"),
            (
                std::io::ErrorKind::InvalidInput,
                "Certificate /etc/ca.cer has an unsupported file-extension! Supported types are pem, crt and der.",
                "DER named .der",
            ),
        ];
        for (kind, message, fix) in cases {
            let e = tiberius::error::Error::Io { kind, message: message.into() };
            let failure = crate::session::connect_failure("db.example:1433", &e);
            assert!(!failure.is_transient(), "{message}: retrying cannot help");
            let text = azs_core::ports::StoreError::from(failure).to_string();
            assert!(
                text.contains("db.example:1433") && text.contains("TLS failed") && text.contains(fix),
                "{text}"
            );
            assert!(text.contains(message), "the library's own words are kept: {text}");
        }
        // The network's own failures stay transient: a failover or a paused database answers later.
        for kind in [ConnectionRefused, TimedOut, UnexpectedEof, NotFound] {
            let e = tiberius::error::Error::Io { kind, message: "connection failed".into() };
            assert!(crate::session::connect_failure("db.example:1433", &e).is_transient(), "{kind:?}");
        }
    }
}
