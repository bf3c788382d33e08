//! Discovery: the admin ARM metadata endpoint and the identity provider's OpenID configuration.
//!
//! - `GET /metadata/endpoints?api-version=2015-01-01` (anonymous): the shape of the reference
//!   fixtures, with `loginEndpoint` = the stamp's login endpoint and `audiences[0]` = its audience.
//!   Missing `api-version`: 400 `NoApiVersion`; another version: 400 `InvalidProperty`.
//! - Azure AD: `GET /aad/{tenantId}/.well-known/openid-configuration`; an unknown tenant gets
//!   400 `invalid_tenant` (AADSTS90002).
//! - AD FS: `GET /adfs/.well-known/openid-configuration`, no tenant segment (a tenant segment
//!   under `/adfs/` is a 404, as on a real AD FS).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use crate::auth::unknown_tenant;
use crate::errors::{arm_error, invalid_property, json_value};
use crate::server::StampState;

pub(crate) const METADATA_API_VERSION: &str = "2015-01-01";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetadataEndpoints {
    gallery_endpoint: String,
    graph_endpoint: String,
    portal_endpoint: String,
    authentication: Authentication,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Authentication {
    login_endpoint: String,
    audiences: Vec<String>,
}

/// `GET /metadata/endpoints`.
pub(crate) async fn metadata_endpoints(
    State(state): State<Arc<StampState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let api_version = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
        .map(|(_, v)| v.into_owned());
    match api_version.as_deref() {
        None => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "NoApiVersion",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
        Some(METADATA_API_VERSION) => {}
        Some(other) => {
            return invalid_property(
                "api-version",
                &format!("'{other}' is not supported; use '{METADATA_API_VERSION}'."),
            );
        }
    }
    let region = format!("stamp{}.azurestack.external", state.index);
    let graph = if state.spec.auth.is_adfs() {
        format!("https://graph.{region}/")
    } else {
        "https://graph.windows.net/".to_owned()
    };
    json_value(
        StatusCode::OK,
        &MetadataEndpoints {
            gallery_endpoint: format!("https://adminportal.{region}:30015/"),
            graph_endpoint: graph,
            portal_endpoint: format!("https://adminportal.{region}/"),
            authentication: Authentication {
                login_endpoint: state.login_endpoint(),
                audiences: vec![state.audience.clone()],
            },
        },
    )
}

#[derive(Serialize)]
struct OpenIdConfiguration {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    token_endpoint_auth_methods_supported: [&'static str; 2],
    response_types_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 1],
}

fn openid_configuration(state: &StampState) -> Response {
    let authority = state.authority();
    json_value(
        StatusCode::OK,
        &OpenIdConfiguration {
            issuer: state.issuer(),
            authorization_endpoint: format!("{authority}/oauth2/authorize"),
            token_endpoint: state.token_endpoint(),
            jwks_uri: format!("{authority}/discovery/keys"),
            token_endpoint_auth_methods_supported: ["client_secret_post", "private_key_jwt"],
            response_types_supported: ["token"],
            subject_types_supported: ["pairwise"],
            id_token_signing_alg_values_supported: ["RS256"],
        },
    )
}

/// `GET /aad/{tenantId}/.well-known/openid-configuration`.
pub(crate) async fn aad_openid_configuration(
    State(state): State<Arc<StampState>>,
    Path(tenant): Path<String>,
) -> Response {
    if !tenant.eq_ignore_ascii_case(&state.spec.tenant_id) {
        return unknown_tenant(&tenant);
    }
    openid_configuration(&state)
}

/// `GET /adfs/.well-known/openid-configuration`.
pub(crate) async fn adfs_openid_configuration(State(state): State<Arc<StampState>>) -> Response {
    openid_configuration(&state)
}
