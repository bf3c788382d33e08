//! Where the database is and how to log in: an ADO.NET connection string (as Azure's portal shows it)
//! or a `sqlserver://` URL, and either the credentials in it or the function's managed identity.
//!
//! TLS is always on (`EncryptionLevel::Required`, rustls); a string that asks for less is refused.

use crate::SchemaName;
use crate::retry::RetryPolicy;
use std::collections::HashMap;
use std::time::Duration;
use tiberius::{AuthMethod, EncryptionLevel};

/// How the store logs in (the `AZS_USAGE_DATABASE_AUTH` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// SQL authentication with the user and password in the connection string.
    ConnectionString,
    /// An Azure AD token for `https://database.windows.net/.default` from the function's managed
    /// identity: system-assigned, or the user-assigned one whose client id the connection string's
    /// `User ID` gives. A fresh token is fetched for every new connection.
    ManagedIdentity,
}

impl Auth {
    /// `connection-string` (or empty) or `managed-identity`.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "connection-string" => Ok(Self::ConnectionString),
            "managed-identity" => Ok(Self::ManagedIdentity),
            _ => Err(ConfigError::Invalid(format!(
                "database auth {value:?}: expected `connection-string` or `managed-identity`"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Never carries the connection string itself: it may hold a password.
    #[error("SQL Server connection settings: {0}")]
    Invalid(String),
}

fn invalid<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid(message.into()))
}

/// Everything needed to open connections to the store's database.
#[derive(Debug, Clone)]
pub struct SqlServerConfig {
    pub(crate) tiberius: tiberius::Config,
    pub auth: Auth,
    /// With [`Auth::ManagedIdentity`]: the client id of a user-assigned identity; `None` for the
    /// system-assigned one.
    pub managed_identity_client_id: Option<String>,
    pub schema: SchemaName,
    /// Connections kept open and reused across invocations.
    pub pool_size: u32,
    pub retry: RetryPolicy,
}

/// The pool of a store built without [`SqlServerConfig::with_concurrency`] (tests, tools).
pub const DEFAULT_POOL_SIZE: u32 = 4;
/// Connections beyond the collection's fan-out: one for an export, one for everything else.
pub const POOL_HEADROOM: u32 = 2;
const APPLICATION_NAME: &str = "azs-usage";
/// How long one round trip may wait for the server. tiberius's default (30 s, ADO.NET's) is too short
/// for merging a large window on a small Azure SQL tier.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

impl SqlServerConfig {
    /// Reads an ADO.NET connection string (`Server=tcp:host,1433;Database=db;User ID=...;Password=...`,
    /// parsed as `tiberius::Config::from_ado_string` parses it) or a URL
    /// (`sqlserver://user:password@host:port/database?encrypt=true`). The login comes from the string:
    /// a user and password, or `Authentication=Active Directory Managed Identity` (URL:
    /// `authentication=managed-identity`).
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        Self::parse_with(s, Auth::ConnectionString)
    }

    /// [`parse`](Self::parse) with the `AZS_USAGE_DATABASE_AUTH` setting: [`Auth::ManagedIdentity`]
    /// logs in with the managed identity whatever the string says (its user id, if any, names a
    /// user-assigned identity's client id, and a password is ignored).
    pub fn parse_with(s: &str, auth: Auth) -> Result<Self, ConfigError> {
        let s = s.trim();
        let scheme = s.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
        let (tiberius, auth, managed_identity_client_id) = match scheme.as_deref() {
            Some("sqlserver" | "mssql") => from_url(s, auth)?,
            Some(other) => return invalid(format!("unsupported URL scheme {other:?}; use sqlserver://")),
            None => from_ado(s, auth)?,
        };
        Ok(Self {
            tiberius,
            auth,
            managed_identity_client_id,
            schema: SchemaName::default(),
            pool_size: DEFAULT_POOL_SIZE,
            retry: RetryPolicy::default(),
        })
    }

    pub fn with_schema(mut self, schema: SchemaName) -> Self {
        self.schema = schema;
        self
    }

    pub fn with_pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sizes the pool for a process that collects up to `concurrency` stamps at once: one connection
    /// per stamp in flight, plus [`POOL_HEADROOM`] so an export (which holds one connection for its whole
    /// run) and the webhook's or status calls never wait behind, or starve, the collection.
    pub fn with_concurrency(self, concurrency: usize) -> Self {
        let stamps = u32::try_from(concurrency).unwrap_or(u32::MAX);
        self.with_pool_size(stamps.saturating_add(POOL_HEADROOM))
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        self.tiberius.get_addr()
    }
}

// ---------------------------------------------------------------------------------------------------
// ADO.NET connection strings
// ---------------------------------------------------------------------------------------------------

/// Keys this module reads itself; the rest go to tiberius unchanged.
const AUTHENTICATION: &str = "authentication";
const ENCRYPT: &str = "encrypt";
const CONNECT_TIMEOUT: &[&str] = &["connect timeout", "connection timeout", "timeout"];
const COMMAND_TIMEOUT: &[&str] = &["command timeout", "commandtimeout"];
const USER_KEYS: &[&str] = &["uid", "username", "user", "user id"];
const PASSWORD_KEYS: &[&str] = &["password", "pwd"];

/// What a connection string says: where, how to log in, and a user-assigned identity's client id.
type Parsed = (tiberius::Config, Auth, Option<String>);

fn from_ado(s: &str, requested: Auth) -> Result<Parsed, ConfigError> {
    let mut pairs =
        ado_pairs(s).or_else(|reason| invalid(format!("not a valid ADO.NET connection string: {reason}")))?;
    if !pairs.contains_key("server") && !pairs.contains_key("data source") {
        return invalid("the connection string names no Server");
    }
    check_encrypt(pairs.remove(ENCRYPT).as_deref())?;
    let timeout = CONNECT_TIMEOUT.iter().find_map(|k| pairs.remove(*k));
    let command_timeout = COMMAND_TIMEOUT.iter().find_map(|k| pairs.remove(*k));
    let auth = match pairs.remove(AUTHENTICATION) {
        None => requested,
        Some(method) => match method.to_ascii_lowercase().replace([' ', '-'], "").as_str() {
            "sqlpassword" => requested,
            "activedirectorymanagedidentity" | "activedirectorymsi" => Auth::ManagedIdentity,
            _ => {
                return invalid(format!(
                    "Authentication={method:?} is not supported; use SQL authentication or \
                     `Active Directory Managed Identity`"
                ));
            }
        },
    };
    let mut client_id = None;
    if auth == Auth::ManagedIdentity {
        // The token is the login; a user id here is the identity's client id, not a SQL login.
        client_id = USER_KEYS.iter().find_map(|k| pairs.get(*k).cloned()).filter(|u| !u.is_empty());
        for key in USER_KEYS.iter().chain(PASSWORD_KEYS) {
            pairs.remove(*key);
        }
    }
    if let Some(ca) = pairs.get("trustservercertificateca") {
        check_ca_file(ca)?;
    }
    let mut config = tiberius::Config::from_ado_string(&ado_string(&pairs))
        .or_else(|e| invalid(format!("not a valid ADO.NET connection string: {e}")))?;
    config.encryption(EncryptionLevel::Required);
    if !pairs.contains_key("application name") && !pairs.contains_key("applicationname") {
        config.application_name(APPLICATION_NAME);
    }
    config.command_timeout(match command_timeout {
        Some(t) => seconds("Command Timeout", &t)?,
        None => Some(DEFAULT_COMMAND_TIMEOUT),
    });
    if let Some(t) = timeout {
        config.handshake_timeout(seconds("Connect Timeout", &t)?);
    }
    Ok((config, auth, client_id))
}

/// A timeout setting in whole seconds; `0` means no limit, as in ADO.NET (`SqlCommand.CommandTimeout`,
/// `SqlConnection.ConnectionTimeout`), where tiberius's `None` is "wait indefinitely".
fn seconds(setting: &str, value: &str) -> Result<Option<Duration>, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(secs) => Ok(Some(Duration::from_secs(secs))),
        Err(_) => invalid(format!("{setting} {value:?} is not a whole number of seconds (0 = no limit)")),
    }
}

/// tiberius 0.13 reads a CA file by its extension alone (`client/tls_stream/certs.rs`,
/// `certs_from_file`): `.pem` and `.crt` as PEM, `.der` as DER, anything else (a `.cer`, no extension)
/// refused at every connect, an I/O error that would look transient. Refused here instead, at start.
fn check_ca_file(path: &str) -> Result<(), ConfigError> {
    let extension = std::path::Path::new(path).extension().and_then(|e| e.to_str()).unwrap_or("");
    if ["pem", "crt", "der"].iter().any(|e| e.eq_ignore_ascii_case(extension)) {
        return Ok(());
    }
    invalid(format!(
        "TrustServerCertificateCA (or AZS_USAGE_DATABASE_CA) {path:?}: the CA file must end in .pem or \
         .crt (PEM) or .der (DER), \
         which is how the client tells them apart; rename it (a .cer file is usually DER: .der)"
    ))
}

fn check_encrypt(value: Option<&str>) -> Result<(), ConfigError> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(()),
        Some(v) if matches!(v.as_str(), "true" | "yes" | "mandatory") => Ok(()),
        // tiberius 0.13 speaks TDS 8.0 only with its `tds80` feature, which this build leaves off
        // (never run against a server here); refused by name rather than silently downgraded.
        Some(v) if v == "strict" => invalid(
            "Encrypt=Strict (TDS 8.0) is not supported by this build; use Encrypt=True: TLS is still \
             required and the server's certificate validated, only the TDS 7.4 login precedes the handshake",
        ),
        Some(v) => invalid(format!(
            "Encrypt={v} is refused: the store always encrypts (TLS required); remove it or set Encrypt=True"
        )),
    }
}

/// Splits an ADO.NET string into lower-cased keys and values, by the rules tiberius 0.13 applies (see
/// `Config::from_ado_string`): `;`-separated pairs split at the first `=`, `==` a literal `=` in a key,
/// values optionally in `'...'` / `"..."` (doubled to escape) or `{...}`, ASCII only.
fn ado_pairs(input: &str) -> Result<HashMap<String, String>, &'static str> {
    if !input.is_ascii() {
        return Err("it contains non-ASCII characters");
    }
    let b = input.as_bytes();
    let (n, mut i) = (b.len(), 0);
    let mut pairs = HashMap::new();
    while i < n {
        while i < n && (b[i] == b';' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= n {
            break;
        }
        let mut key = String::new();
        loop {
            match b.get(i) {
                None | Some(b';') => return Err("a key is not followed by `=`"),
                Some(b'=') if b.get(i + 1) == Some(&b'=') => {
                    key.push('=');
                    i += 2;
                }
                Some(b'=') => {
                    i += 1;
                    break;
                }
                Some(c) => {
                    key.push(*c as char);
                    i += 1;
                }
            }
        }
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return Err("a key is empty");
        }
        while i < n && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = match b.get(i) {
            Some(&quote @ (b'\'' | b'"')) => {
                i += 1;
                let mut v = String::new();
                loop {
                    match b.get(i) {
                        None => return Err("a quoted value is not closed"),
                        Some(c) if *c == quote && b.get(i + 1) == Some(&quote) => {
                            v.push(quote as char);
                            i += 2;
                        }
                        Some(c) if *c == quote => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            v.push(*c as char);
                            i += 1;
                        }
                    }
                }
                skip_to_separator(b, &mut i)?;
                v
            }
            Some(b'{') => {
                let close = input[i..].find('}').ok_or("a `{` value is not closed")?;
                let v = input[i + 1..i + close].to_owned();
                i += close + 1;
                skip_to_separator(b, &mut i)?;
                v
            }
            _ => {
                let start = i;
                while i < n && b[i] != b';' {
                    i += 1;
                }
                input[start..i].trim_end().to_owned()
            }
        };
        pairs.insert(key, value);
        if i < n && b[i] == b';' {
            i += 1;
        }
    }
    Ok(pairs)
}

fn skip_to_separator(b: &[u8], i: &mut usize) -> Result<(), &'static str> {
    while *i < b.len() && b[*i] != b';' {
        if !b[*i].is_ascii_whitespace() {
            return Err("characters follow a quoted value");
        }
        *i += 1;
    }
    Ok(())
}

/// Pairs back into a string tiberius reads the same way: every value double-quoted, `"` doubled.
fn ado_string(pairs: &HashMap<String, String>) -> String {
    let mut keys: Vec<&String> = pairs.keys().collect();
    keys.sort();
    keys.iter()
        .map(|k| format!("{}=\"{}\"", k.replace('=', "=="), pairs[*k].replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(";")
}

// ---------------------------------------------------------------------------------------------------
// sqlserver:// URLs
// ---------------------------------------------------------------------------------------------------

fn from_url(s: &str, requested: Auth) -> Result<Parsed, ConfigError> {
    let url = url::Url::parse(s).or_else(|e| invalid(format!("not a valid sqlserver:// URL: {e}")))?;
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
        _ => return invalid("the URL names no host"),
    };
    let mut config = tiberius::Config::new();
    config.host(&host);
    config.port(url.port().unwrap_or(1433));
    let database = percent_decode(url.path().trim_start_matches('/'));
    if !database.is_empty() {
        if database.contains('/') {
            return invalid("the URL path must be just the database name");
        }
        config.database(database);
    }
    config.encryption(EncryptionLevel::Required);
    config.application_name(APPLICATION_NAME);

    let (mut auth_option, mut trust_all, mut trust_ca) = (None, false, None);
    let mut command_timeout = Some(DEFAULT_COMMAND_TIMEOUT);
    for (key, value) in url.query_pairs() {
        match key.to_ascii_lowercase().as_str() {
            "encrypt" => check_encrypt(Some(&value))?,
            "trustservercertificate" => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" => trust_all = true,
                "false" | "no" => trust_all = false,
                _ => return invalid("trustServerCertificate must be true or false"),
            },
            "trustservercertificateca" => trust_ca = Some(value.into_owned()),
            "hostnameincertificate" => config.hostname_in_certificate(value.as_ref()),
            "applicationname" | "application_name" => config.application_name(value.as_ref()),
            "connecttimeout" | "connect_timeout" => {
                config.handshake_timeout(seconds("connectTimeout", &value)?)
            }
            "commandtimeout" | "command_timeout" => command_timeout = seconds("commandTimeout", &value)?,
            "authentication" => auth_option = Some(value.to_ascii_lowercase().replace([' ', '-', '_'], "")),
            other => return invalid(format!("unknown URL option {other:?}")),
        }
    }
    config.command_timeout(command_timeout);
    match (trust_all, trust_ca) {
        (true, Some(_)) => {
            return invalid("trustServerCertificate and trustServerCertificateCA exclude each other");
        }
        (true, None) => config.trust_cert(),
        (false, Some(ca)) => {
            check_ca_file(&ca)?;
            config.trust_cert_ca(ca)
        }
        (false, None) => {}
    }
    let user = percent_decode(url.username());
    let password = url.password().map(percent_decode);
    match auth_option.as_deref() {
        None | Some("sqlpassword") if requested == Auth::ConnectionString => {
            if user.is_empty() {
                return invalid("the URL has no user: use sqlserver://user:password@host/database");
            }
            config.authentication(AuthMethod::sql_server(&user, password.unwrap_or_default()));
            Ok((config, Auth::ConnectionString, None))
        }
        None
        | Some("sqlpassword" | "managedidentity" | "activedirectorymanagedidentity" | "activedirectorymsi") => {
            Ok((config, Auth::ManagedIdentity, (!user.is_empty()).then_some(user)))
        }
        Some(other) => invalid(format!("authentication {other:?} is not supported; use managed-identity")),
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tiberius keeps its settings private; its Debug output (secrets redacted) is what can be seen.
    fn seen(config: &SqlServerConfig) -> String {
        format!("{:?}", config.tiberius)
    }

    #[test]
    fn reads_the_connection_string_the_azure_portal_shows() {
        let c = SqlServerConfig::parse(
            "Server=tcp:azs-usage.database.windows.net,1433;Initial Catalog=usage;Persist Security Info=False;\
             User ID=collector;Password='p@ss;w0rd=';MultipleActiveResultSets=False;Encrypt=True;\
             TrustServerCertificate=False;Connection Timeout=30;",
        )
        .unwrap();
        assert_eq!(c.address(), "azs-usage.database.windows.net:1433");
        assert_eq!(c.auth, Auth::ConnectionString);
        let seen = seen(&c);
        assert!(seen.contains("database: Some(\"usage\")"), "{seen}");
        assert!(seen.contains("encryption: Required"), "{seen}");
        assert!(seen.contains("user: \"collector\""), "{seen}");
        assert!(seen.contains("handshake_timeout: Some(30s)"), "{seen}");
        assert!(seen.contains("command_timeout: Some(300s)"), "{seen}");
        assert!(seen.contains("application_name: Some(\"azs-usage\")"), "{seen}");
        assert!(!seen.contains("p@ss"), "the password must not show in Debug: {seen}");
    }

    #[test]
    fn values_survive_the_rewrite_handed_to_tiberius() {
        // tiberius keeps the password private (and redacts it in Debug), so check the rewrite instead:
        // the string handed over reads back, by tiberius's quoting rules, as exactly the same pairs.
        let tricky = ["plain", "a\"b", "x;y=z", "{braced}", "it's", " padded ", "=lead", "tail}", ""];
        for value in tricky {
            let mut pairs = HashMap::new();
            pairs.insert("server".to_owned(), "h".to_owned());
            pairs.insert("password".to_owned(), value.to_owned());
            let rewritten = ado_string(&pairs);
            assert_eq!(ado_pairs(&rewritten).unwrap(), pairs, "{value:?} via {rewritten}");
            assert!(tiberius::Config::from_ado_string(&rewritten).is_ok(), "{rewritten}");
        }
    }

    #[test]
    fn the_ado_scanner_agrees_with_tiberius_on_quoting() {
        let p = ado_pairs("Server = h ; Password='x;y=z';Key={a;b};Other=\"q\"\"r\"; Plain=a=b==").unwrap();
        assert_eq!(p["server"], "h");
        assert_eq!(p["password"], "x;y=z");
        assert_eq!(p["key"], "a;b");
        assert_eq!(p["other"], "q\"r");
        assert_eq!(p["plain"], "a=b==");
        assert!(ado_pairs("Server=h;Password='open").is_err());
        assert!(ado_pairs("Server=h;Key=v\u{e9}").is_err());
    }

    #[test]
    fn a_string_that_asks_for_no_encryption_is_refused() {
        for s in [
            "Server=h;User Id=u;Password=p;Encrypt=False",
            "Server=h;Encrypt=DANGER_PLAINTEXT",
            "Server=h;Encrypt=no",
        ] {
            let e = SqlServerConfig::parse(s).unwrap_err().to_string();
            assert!(e.contains("always encrypts"), "{e}");
            assert!(!e.contains("Password=p"));
        }
        assert!(SqlServerConfig::parse("sqlserver://u:p@h/db?encrypt=false").is_err());
    }

    #[test]
    fn encrypt_strict_is_refused_by_name_not_as_a_request_for_less() {
        for s in ["Server=h;User Id=u;Password=p;Encrypt=Strict", "sqlserver://u:p@h/db?encrypt=strict"] {
            let e = SqlServerConfig::parse(s).unwrap_err().to_string();
            assert!(
                e.contains("Encrypt=Strict (TDS 8.0) is not supported") && e.contains("Encrypt=True"),
                "{e}"
            );
        }
    }

    #[test]
    fn encryption_is_required_even_when_the_string_says_nothing() {
        let c = SqlServerConfig::parse("Server=h;User Id=u;Password=p").unwrap();
        assert!(seen(&c).contains("encryption: Required"));
        let c = SqlServerConfig::parse("Server=h;User Id=u;Password=p;Encrypt=Mandatory").unwrap();
        assert!(seen(&c).contains("encryption: Required"));
    }

    #[test]
    fn managed_identity_from_the_connection_string() {
        let c = SqlServerConfig::parse(
            "Server=tcp:s.database.windows.net,1433;Database=usage;Authentication=Active Directory Managed Identity;\
             User Id=11111111-2222-3333-4444-555555555555",
        )
        .unwrap();
        assert_eq!(c.auth, Auth::ManagedIdentity);
        assert_eq!(c.managed_identity_client_id.as_deref(), Some("11111111-2222-3333-4444-555555555555"));
        assert!(!seen(&c).contains("11111111"), "the client id is not a SQL login: {}", seen(&c));
        let c = SqlServerConfig::parse("Server=s;Database=usage;Authentication=ActiveDirectoryMSI").unwrap();
        assert_eq!(c.auth, Auth::ManagedIdentity);
    }

    #[test]
    fn managed_identity_from_the_auth_setting() {
        let c = SqlServerConfig::parse_with(
            "Server=tcp:s.database.windows.net;Database=usage",
            Auth::ManagedIdentity,
        )
        .unwrap();
        assert_eq!(c.auth, Auth::ManagedIdentity);
        let c = SqlServerConfig::parse_with(
            "sqlserver://cid@s.database.windows.net/usage",
            Auth::ManagedIdentity,
        )
        .unwrap();
        assert_eq!(c.auth, Auth::ManagedIdentity);
        assert_eq!(c.managed_identity_client_id.as_deref(), Some("cid"));
        let c =
            SqlServerConfig::parse_with("sqlserver://s.database.windows.net/usage", Auth::ManagedIdentity)
                .unwrap();
        assert_eq!((c.auth, c.managed_identity_client_id), (Auth::ManagedIdentity, None));
        let c = SqlServerConfig::parse_with("Server=s;User Id=cid;Password=ignored", Auth::ManagedIdentity)
            .unwrap();
        assert_eq!(c.managed_identity_client_id.as_deref(), Some("cid"));
        assert_eq!(Auth::parse("managed-identity").unwrap(), Auth::ManagedIdentity);
        assert_eq!(Auth::parse("").unwrap(), Auth::ConnectionString);
        assert!(Auth::parse("kerberos").is_err());
    }

    #[test]
    fn unsupported_azure_ad_methods_are_named_not_ignored() {
        let e = SqlServerConfig::parse("Server=s;Authentication=Active Directory Interactive").unwrap_err();
        assert!(e.to_string().contains("not supported"));
    }

    #[test]
    fn reads_a_url() {
        let c = SqlServerConfig::parse(
            "sqlserver://collector:p%40ss%3Bw0rd@db.example.net:14330/usage?encrypt=true",
        )
        .unwrap();
        assert_eq!(c.address(), "db.example.net:14330");
        assert_eq!(c.auth, Auth::ConnectionString);
        assert!(
            format!("{:?}", c.tiberius)
                .contains(&format!("{:?}", AuthMethod::sql_server("collector", "p@ss;w0rd")))
        );
        let seen = seen(&c);
        assert!(
            seen.contains("database: Some(\"usage\")") && seen.contains("encryption: Required"),
            "{seen}"
        );
        assert!(!seen.contains("p@ss"));
    }

    #[test]
    fn a_url_defaults_to_port_1433_and_may_trust_a_test_server_certificate() {
        let c =
            SqlServerConfig::parse("sqlserver://sa:pw@localhost/master?trustServerCertificate=true").unwrap();
        assert_eq!(c.address(), "localhost:1433");
        assert!(seen(&c).contains("bypass: true"), "{}", seen(&c));
        assert!(seen(&c).contains("command_timeout: Some(300s)"), "{}", seen(&c));
        let c = SqlServerConfig::parse("sqlserver://sa:pw@localhost/master?commandTimeout=60").unwrap();
        assert!(seen(&c).contains("command_timeout: Some(60s)"), "{}", seen(&c));
        assert!(seen(&c).contains("bypass: false"), "{}", seen(&c));
    }

    #[test]
    fn a_url_with_managed_identity_needs_no_password() {
        let c = SqlServerConfig::parse(
            "sqlserver://s.database.windows.net/usage?authentication=managed-identity",
        )
        .unwrap();
        assert_eq!(c.auth, Auth::ManagedIdentity);
    }

    #[test]
    fn malformed_urls_and_strings_are_refused_with_a_reason() {
        for (s, why) in [
            ("sqlserver://h/db", "no user"),
            ("sqlserver://u:p@h/db?colour=blue", "unknown URL option"),
            ("postgres://u:p@h/db", "unsupported URL scheme"),
            ("Database=usage;User Id=u", "no Server"),
            ("Server=h;Password='unterminated", "not a valid"),
        ] {
            let e = SqlServerConfig::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn a_zero_timeout_means_no_limit_as_in_ado_net() {
        let c = SqlServerConfig::parse("Server=h;User Id=u;Password=p;Command Timeout=0;Connect Timeout=0")
            .unwrap();
        assert_eq!(c.tiberius.get_command_timeout(), None);
        assert_eq!(c.tiberius.get_handshake_timeout(), None);
        let c = SqlServerConfig::parse("sqlserver://u:p@h/db?commandTimeout=0&connectTimeout=0").unwrap();
        assert_eq!(c.tiberius.get_command_timeout(), None);
        assert_eq!(c.tiberius.get_handshake_timeout(), None);
    }

    #[test]
    fn timeouts_are_whole_seconds_and_default_to_five_minutes_per_round_trip() {
        let c = SqlServerConfig::parse("Server=h;User Id=u;Password=p;Command Timeout=45;Connect Timeout=5")
            .unwrap();
        assert_eq!(c.tiberius.get_command_timeout(), Some(Duration::from_secs(45)));
        assert_eq!(c.tiberius.get_handshake_timeout(), Some(Duration::from_secs(5)));
        let c = SqlServerConfig::parse("Server=h;User Id=u;Password=p").unwrap();
        assert_eq!(c.tiberius.get_command_timeout(), Some(DEFAULT_COMMAND_TIMEOUT));
        for (s, setting) in [
            ("Server=h;User Id=u;Password=p;Command Timeout=-1", "Command Timeout"),
            ("Server=h;User Id=u;Password=p;Connect Timeout=1.5", "Connect Timeout"),
            ("sqlserver://u:p@h/db?commandTimeout=soon", "commandTimeout"),
        ] {
            let e = SqlServerConfig::parse(s).unwrap_err().to_string();
            assert!(e.contains(setting) && e.contains("0 = no limit"), "{s}: {e}");
        }
    }

    #[test]
    fn pool_size_defaults_to_four_and_is_at_least_one() {
        let c = SqlServerConfig::parse("Server=h;User Id=u;Password=p").unwrap();
        assert_eq!(c.pool_size, 4);
        assert_eq!(c.clone().with_pool_size(0).pool_size, 1);
        assert_eq!(
            c.clone().with_concurrency(8).pool_size,
            10,
            "the default fan-out of 8, an export, one more"
        );
        assert_eq!(c.with_concurrency(1).pool_size, 3);
    }

    #[test]
    fn a_ca_file_the_client_cannot_tell_pem_from_der_by_is_refused_at_start_naming_the_setting() {
        for ok in ["/etc/ssl/rds-global-bundle.pem", "C:\\certs\\DigiCertGlobalRootG2.crt", "/ca/root.DER"] {
            let ado = format!(
                "Server=tcp:db,1433;Database=usage;User ID=u;Password=p;TrustServerCertificateCA={ok}"
            );
            assert!(SqlServerConfig::parse(&ado).is_ok(), "{ok}");
        }
        for refused in ["/etc/ssl/root.cer", "/etc/ssl/ca-bundle"] {
            let ado = format!(
                "Server=tcp:db,1433;Database=usage;User ID=u;Password=p;TrustServerCertificateCA={refused}"
            );
            let url = format!("sqlserver://u:p@db/usage?trustServerCertificateCA={refused}");
            for s in [ado, url] {
                let e = SqlServerConfig::parse(&s).unwrap_err().to_string();
                assert!(
                    e.contains("TrustServerCertificateCA") && e.contains(".der") && e.contains(refused),
                    "{e}"
                );
            }
        }
    }
}
