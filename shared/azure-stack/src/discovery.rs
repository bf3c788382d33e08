//! Discovery: from a stamp's admin ARM endpoint to the token audience, the login endpoint and the
//! token endpoint, the way Microsoft's own scripts do it.
//!
//! 1. `GET {adminArm}/metadata/endpoints?api-version=2015-01-01` gives `authentication.audiences[0]`
//!    (the `resource=` of token requests) and `authentication.loginEndpoint` (the authority).
//! 2. The stamp is AD FS when the login endpoint, without its trailing `/`, ends with `/adfs`.
//! 3. The openid configuration gives `token_endpoint`: Azure AD at
//!    `{login}/{tenant}/.well-known/openid-configuration`, AD FS at
//!    `{login}/.well-known/openid-configuration` with no tenant segment (an AD FS authority must never
//!    get a tenant or `common` segment).
//!
//! Precedence: an audience (`tokenRequestResourceUrl`) or authority (`authorityEndpointUrl`) the
//! stamp is registered with wins over the discovered one. Registration pins both (the operator's or
//! what discovery found then, verified or not), so a later run never follows the stamp's metadata
//! somewhere else. A different audience, or another path on the login host, is logged and the pinned
//! value used; a metadata document that names another login *host* fails the run before anything is
//! sent, because the credential goes to that host: a stamp (or whoever answers for its admin ARM
//! endpoint) must not be able to redirect it. For the same reason the token endpoint the openid
//! configuration names must be on the login host (Microsoft Entra's public names of one cloud count as
//! one host: `login.windows.net` names its token endpoint on `login.microsoftonline.com`).
//!
//! A stamp registered with `isAdfs` that disagrees with what its authority says is refused: the two
//! flows differ (tenant segment, certificate requirements) and guessing would fail later with an
//! obscure token error.

use crate::http::{StampHttp, Unreadable};
use azs_core::StampConnection;
use azs_core::ports::{DiscoveredEndpoints, PullError, PullStage};
use azs_core::registration::MAX_URL_LEN;
pub use azs_core::stamp::is_adfs_login;
use serde::Deserialize;
use tracing::{info, warn};

pub(crate) const METADATA_API_VERSION: &str = "2015-01-01";

/// What `metadata/endpoints` says about authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StampMetadata {
    pub login_endpoint: String,
    pub audience: String,
}

/// Runs discovery for one stamp.
pub(crate) async fn discover(
    http: &StampHttp,
    connection: &StampConnection,
    retries: &mut u64,
) -> Result<DiscoveredEndpoints, PullError> {
    let metadata_url = format!(
        "{}/metadata/endpoints?api-version={METADATA_API_VERSION}",
        connection.admin_arm_endpoint.trim_end_matches('/')
    );
    let metadata = http
        .call(PullStage::Discovery, "metadata endpoint", |c| c.get(&metadata_url), parse_metadata, retries)
        .await
        .map_err(|f| f.into_pull_error(PullStage::Discovery))?;

    if let Some(pinned) =
        connection.authority_endpoint_url.as_deref().map(str::trim).filter(|p| !p.is_empty())
        && !same_login_host(pinned, &metadata.login_endpoint)
    {
        return Err(discovery_error(format!(
            "the stamp's metadata names the login host {}, but its credential is bound to {}; nothing \
             was sent. If the stamp's identity provider really moved, change authorityEndpointUrl \
             together with a new credential",
            origin_of(&metadata.login_endpoint),
            origin_of(pinned)
        )));
    }
    let audience = chosen(
        "tokenRequestResourceUrl",
        connection.token_request_resource_url.as_deref(),
        &metadata.audience,
    );
    let login_endpoint = chosen(
        "authorityEndpointUrl",
        connection.authority_endpoint_url.as_deref(),
        &metadata.login_endpoint,
    );
    for (field, url) in [("audience", &audience), ("loginEndpoint", &login_endpoint)] {
        if url.chars().count() > MAX_URL_LEN {
            return Err(discovery_error(format!(
                "the stamp's metadata gives a {field} of {} characters; at most {MAX_URL_LEN} are accepted",
                url.chars().count()
            )));
        }
    }
    if !login_endpoint.trim().to_ascii_lowercase().starts_with("https://") {
        return Err(discovery_error(format!(
            "the login endpoint {} is not https; credentials are never sent in clear text",
            origin_of(&login_endpoint)
        )));
    }
    let is_adfs = is_adfs_login(&login_endpoint);
    if is_adfs != connection.is_adfs {
        return Err(discovery_error(format!(
            "the stamp is registered with isAdfs={} but its login endpoint on {} is {} \
             (isAdfs={is_adfs}); correct isAdfs",
            connection.is_adfs,
            origin_of(&login_endpoint),
            if is_adfs { "AD FS" } else { "Azure AD" },
        )));
    }

    let openid_url = openid_configuration_url(&login_endpoint, &connection.tenant_id, is_adfs);
    let token_endpoint = http
        .call(
            PullStage::Discovery,
            "openid configuration",
            |c| c.get(&openid_url),
            parse_openid_configuration,
            retries,
        )
        .await
        .map_err(|f| f.into_pull_error(PullStage::Discovery))?;
    if !token_endpoint.trim().to_ascii_lowercase().starts_with("https://") {
        return Err(discovery_error(format!(
            "the token endpoint {} is not https; credentials are never sent in clear text",
            origin_of(&token_endpoint)
        )));
    }
    if !same_login_host(&login_endpoint, &token_endpoint) {
        return Err(discovery_error(format!(
            "the openid configuration names a token endpoint on {}, not on the login host {}; the \
             credential is only ever sent to the login host",
            origin_of(&token_endpoint),
            origin_of(&login_endpoint)
        )));
    }
    info!(%audience, %login_endpoint, is_adfs, %token_endpoint, "discovered");
    Ok(DiscoveredEndpoints { audience, login_endpoint, is_adfs, token_endpoint })
}

/// The registered value if there is one (logging when the stamp says otherwise), else the discovered.
fn chosen(field: &'static str, registered: Option<&str>, discovered: &str) -> String {
    match registered.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => {
            if r.trim_end_matches('/') != discovered.trim_end_matches('/') {
                warn!(
                    field,
                    registered = r,
                    discovered,
                    "using the registered value, not the discovered one"
                );
            }
            r.to_owned()
        }
        None => discovered.to_owned(),
    }
}

/// Microsoft Entra's login hosts that answer for each other, per cloud.
const ENTRA_LOGIN_HOSTS: &[&[&str]] = &[
    &["login.windows.net", "login.microsoftonline.com", "login.microsoft.com", "sts.windows.net"],
    &["login.microsoftonline.us", "login.usgovcloudapi.net"],
    &["login.chinacloudapi.cn", "login.partner.microsoftonline.cn"],
];

/// Whether a credential bound to the login endpoint `pinned` may go to `url`: the same https origin
/// (host and port), or two names of one Microsoft Entra cloud.
pub(crate) fn same_login_host(pinned: &str, url: &str) -> bool {
    let origin = |u: &str| {
        let u = reqwest::Url::parse(u.trim()).ok()?;
        let host = u.host_str()?.trim_end_matches('.').to_ascii_lowercase();
        Some((u.scheme().to_owned(), host, u.port_or_known_default()))
    };
    let (Some(a), Some(b)) = (origin(pinned), origin(url)) else { return false };
    if a == b {
        return true;
    }
    let cloud = |host: &str| ENTRA_LOGIN_HOSTS.iter().position(|names| names.contains(&host));
    a.0 == "https" && b.0 == "https" && a.2 == b.2 && cloud(&a.1).is_some() && cloud(&a.1) == cloud(&b.1)
}

/// `scheme://host:port` of a URL the stamp sent (its path and query are the stamp's business), or
/// a placeholder when it is not a URL.
fn origin_of(url: &str) -> String {
    reqwest::Url::parse(url.trim())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "(not a URL)".to_owned())
}

fn discovery_error(message: String) -> PullError {
    PullError {
        stage: PullStage::Discovery,
        http_status: None,
        upstream_code: None,
        message,
        transient: false,
    }
}

/// Where the openid configuration of a login endpoint is. Joins with exactly one `/` whatever the
/// registered endpoint ends with; Azure AD gets the tenant segment (unless the endpoint already ends
/// with it), AD FS never does.
pub fn openid_configuration_url(login_endpoint: &str, tenant_id: &str, is_adfs: bool) -> String {
    let base = login_endpoint.trim().trim_end_matches('/');
    let tenant = tenant_id.trim().trim_matches('/');
    let has_tenant = base.rsplit('/').next().is_some_and(|last| last.eq_ignore_ascii_case(tenant));
    if is_adfs || tenant.is_empty() || has_tenant {
        format!("{base}/.well-known/openid-configuration")
    } else {
        format!("{base}/{tenant}/.well-known/openid-configuration")
    }
}

pub(crate) fn parse_metadata(body: &[u8]) -> Result<StampMetadata, Unreadable> {
    #[derive(Deserialize)]
    struct Metadata {
        authentication: Option<Authentication>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Authentication {
        login_endpoint: Option<String>,
        #[serde(default)]
        audiences: Vec<String>,
    }
    let metadata: Metadata = serde_json::from_slice(body).map_err(|e| {
        Unreadable::permanent(format!(
            "not the Azure Stack Hub metadata document ({}); is adminArmEndpoint right?",
            crate::http::json_error(&e)
        ))
    })?;
    let authentication = metadata
        .authentication
        .ok_or_else(|| Unreadable::permanent("the metadata has no authentication section"))?;
    let login_endpoint = authentication
        .login_endpoint
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| Unreadable::permanent("the metadata has no authentication.loginEndpoint"))?;
    let audience = authentication
        .audiences
        .into_iter()
        .next()
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| Unreadable::permanent("the metadata has no authentication.audiences"))?;
    Ok(StampMetadata { login_endpoint, audience })
}

pub(crate) fn parse_openid_configuration(body: &[u8]) -> Result<String, Unreadable> {
    #[derive(Deserialize)]
    struct OpenIdConfiguration {
        token_endpoint: Option<String>,
    }
    let config: OpenIdConfiguration = serde_json::from_slice(body).map_err(|e| {
        Unreadable::permanent(format!("not an openid configuration ({})", crate::http::json_error(&e)))
    })?;
    config
        .token_endpoint
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| Unreadable::permanent("the openid configuration has no token_endpoint"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_testkit::fixtures::text as fixture;

    #[test]
    fn the_azure_ad_metadata_fixture_is_not_adfs() {
        let m = parse_metadata(fixture("azs-metadata-endpoints-aad.json").as_bytes()).unwrap();
        assert_eq!(m.login_endpoint, "https://login.windows.net/");
        assert_eq!(m.audience, "https://contoso.onmicrosoft.com/4de154de-f8a8-4017-af41-df619da68155");
        assert!(!is_adfs_login(&m.login_endpoint));
    }

    #[test]
    fn the_adfs_metadata_fixture_is_adfs() {
        let m = parse_metadata(fixture("azs-metadata-endpoints-adfs.json").as_bytes()).unwrap();
        assert_eq!(
            m.audience,
            "https://management.adfs.azurestack.local/4de154de-f8a8-4017-af41-df619da68155"
        );
        assert!(is_adfs_login(&m.login_endpoint));
        assert!(is_adfs_login("https://adfs.local.azurestack.external/adfs"));
        assert!(!is_adfs_login("https://adfs.local.azurestack.external/adfs-not"));
    }

    #[test]
    fn azure_ad_openid_configuration_has_the_tenant_segment_once() {
        let t = "4de154de-f8a8-4017-af41-df619da68155";
        let want = format!("https://login.windows.net/{t}/.well-known/openid-configuration");
        assert_eq!(openid_configuration_url("https://login.windows.net/", t, false), want);
        assert_eq!(openid_configuration_url("https://login.windows.net", t, false), want);
        assert_eq!(openid_configuration_url(&format!("https://login.windows.net/{t}/"), t, false), want);
    }

    #[test]
    fn adfs_openid_configuration_never_gets_a_tenant_segment() {
        let want = "https://adfs.local.azurestack.external/adfs/.well-known/openid-configuration";
        assert_eq!(
            openid_configuration_url("https://adfs.local.azurestack.external/adfs/", "adfs", true),
            want
        );
        assert_eq!(
            openid_configuration_url(
                "https://adfs.local.azurestack.external/adfs",
                "4de154de-f8a8-4017-af41-df619da68155",
                true
            ),
            want
        );
    }

    #[test]
    fn a_credential_only_goes_to_its_login_host_or_another_name_of_the_same_entra_cloud() {
        let adfs = "https://adfs.local.azurestack.external/adfs/";
        assert!(same_login_host(adfs, "https://ADFS.local.azurestack.external:443/adfs/oauth2/token"));
        assert!(!same_login_host(adfs, "https://adfs.local.azurestack.external:8443/adfs/oauth2/token"));
        assert!(!same_login_host(adfs, "https://evil.example/adfs/oauth2/token"));
        assert!(!same_login_host(adfs, "http://adfs.local.azurestack.external/adfs/oauth2/token"));
        assert!(!same_login_host(adfs, "not a url"));
        let t = "4de154de-f8a8-4017-af41-df619da68155";
        assert!(same_login_host(
            "https://login.windows.net/",
            &format!("https://login.microsoftonline.com/{t}/oauth2/token")
        ));
        assert!(!same_login_host(
            "https://login.windows.net/",
            "https://login.microsoftonline.us/x/oauth2/token"
        ));
        assert!(!same_login_host("https://login.windows.net/", "https://login.windows.net.evil.example/x"));
    }

    #[test]
    fn a_page_that_is_not_metadata_is_refused_without_retrying() {
        let e = parse_metadata(b"<html>Sign in</html>").unwrap_err();
        assert!(!e.retryable);
        assert!(parse_metadata(br#"{"authentication":{"loginEndpoint":"x","audiences":[]}}"#).is_err());
    }

    #[test]
    fn the_token_endpoint_comes_from_the_openid_configuration() {
        let body =
            br#"{"issuer":"x","token_endpoint":"https://adfs.local.azurestack.external/adfs/oauth2/token/"}"#;
        assert_eq!(
            parse_openid_configuration(body).unwrap(),
            "https://adfs.local.azurestack.external/adfs/oauth2/token/"
        );
    }
}
