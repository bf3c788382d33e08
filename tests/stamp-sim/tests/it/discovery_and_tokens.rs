//! Discovery (metadata, OpenID configuration) and the token endpoint, both flavours.

use std::collections::BTreeSet;

use crate::common::*;
use stamp_sim::{SimAuth, StampSpec};

fn keys(value: &serde_json::Value) -> BTreeSet<String> {
    value.as_object().expect("object").keys().cloned().collect()
}

#[tokio::test]
async fn metadata_matches_the_fixture_shapes_and_points_at_the_stamp() {
    let simulator =
        start(1000, vec![StampSpec::generated(1, 0, aad()), StampSpec::generated(1, 1, adfs())]).await;
    let client = client(&simulator);
    for (stamp, fixture_name) in [
        (simulator.stamp(0), "azs-metadata-endpoints-aad.json"),
        (simulator.stamp(1), "azs-metadata-endpoints-adfs.json"),
    ] {
        let url = format!("{}/metadata/endpoints?api-version=2015-01-01", stamp.admin_arm_endpoint());
        let body: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        let expected = fixture(fixture_name);
        assert_eq!(keys(&body), keys(&expected));
        assert_eq!(keys(&body["authentication"]), keys(&expected["authentication"]));
        assert_eq!(body["authentication"]["loginEndpoint"], stamp.login_endpoint());
        assert_eq!(body["authentication"]["audiences"][0], stamp.audience());
        assert!(stamp.login_endpoint().ends_with(if stamp.is_adfs() { "/adfs/" } else { "/aad/" }));
    }
    assert!(simulator.stamp(1).audience().starts_with("https://management.adfs.azurestack.local/"));

    let stamp = simulator.stamp(0);
    let missing =
        client.get(format!("{}/metadata/endpoints", stamp.admin_arm_endpoint())).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NoApiVersion");
    let wrong = client
        .get(format!("{}/metadata/endpoints?api-version=2099-01-01", stamp.admin_arm_endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidProperty");
}

#[tokio::test]
async fn openid_configuration_per_flavour() {
    let simulator =
        start(1000, vec![StampSpec::generated(1, 0, aad()), StampSpec::generated(1, 1, adfs())]).await;
    let client = client(&simulator);
    let (aad_stamp, adfs_stamp) = (simulator.stamp(0), simulator.stamp(1));

    let url =
        format!("{}{}/.well-known/openid-configuration", aad_stamp.login_endpoint(), aad_stamp.tenant_id());
    let body: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["token_endpoint"], aad_stamp.token_endpoint());
    assert_eq!(
        aad_stamp.token_endpoint(),
        format!("{}{}/oauth2/token", aad_stamp.login_endpoint(), aad_stamp.tenant_id())
    );
    let unknown = client
        .get(format!("{}common/.well-known/openid-configuration", aad_stamp.login_endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let body: serde_json::Value = unknown.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS90002"));

    let url = format!("{}.well-known/openid-configuration", adfs_stamp.login_endpoint());
    let body: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["token_endpoint"], format!("{}/adfs/oauth2/token", adfs_stamp.admin_arm_endpoint()));
    for path in [
        format!("{}{}/.well-known/openid-configuration", adfs_stamp.login_endpoint(), adfs_stamp.tenant_id()),
        format!("{}common/oauth2/token", adfs_stamp.login_endpoint()),
    ] {
        let status = client.get(&path).send().await.unwrap().status();
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test]
async fn secret_tokens_have_the_fixture_shape_and_wrong_secrets_are_refused() {
    let (simulator, stamp) = start_one(StampSpec::generated(2, 0, adfs())).await;
    let client = client(&simulator);
    let (app, audience) = (stamp.application_id(), stamp.audience());
    let form = |secret: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", app.as_str()),
            ("client_secret", secret),
            ("resource", audience.as_str()),
        ]
    };
    let (status, body) = token_request(&client, &stamp, &form(SECRET)).await;
    assert_eq!(status, 200, "{body}");
    let expected = fixture("token-response.json");
    assert_eq!(keys(&body), keys(&expected));
    for (key, value) in body.as_object().unwrap() {
        assert!(value.is_string(), "{key} is a string like the fixture's");
    }
    assert_eq!(body["expires_in"], "3599");
    assert_eq!(body["resource"], stamp.audience());

    let (status, body) = token_request(&client, &stamp, &form("wrong")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");

    let (status, body) = token_request(
        &client,
        &stamp,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &app),
            ("client_secret", SECRET),
            ("scope", &format!("{audience}/.default")),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_scope");
    assert!(body["error_description"].as_str().unwrap().starts_with("MSIS9605"));

    let (status, body) = token_request(
        &client,
        &stamp,
        &[("grant_type", "client_credentials"), ("client_id", &app), ("client_secret", SECRET)],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");

    let stats = stamp.stats();
    assert_eq!((stats.token_requests, stats.tokens_issued, stats.rejected_requests), (4, 1, 3));
}

#[tokio::test]
async fn certificate_assertions_are_verified() {
    let (registered, other) = certificates();
    for adfs in [true, false] {
        let auth = if adfs {
            SimAuth::Adfs { secret: None, certificate_pem: Some(registered.certificate_pem.clone()) }
        } else {
            SimAuth::AzureAd { secret: None, certificate_pem: Some(registered.certificate_pem.clone()) }
        };
        let (simulator, stamp) = start_one(StampSpec::generated(3, 0, auth)).await;
        let client = client(&simulator);
        let (app, audience) = (stamp.application_id(), stamp.audience());
        let post = |assertion: String| {
            let (client, stamp, app, audience) = (&client, &stamp, app.clone(), audience.clone());
            async move {
                token_request(
                    client,
                    stamp,
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_id", &app),
                        ("resource", &audience),
                        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                        ("client_assertion", &assertion),
                    ],
                )
                .await
            }
        };

        let valid = Assertion::valid(&stamp, registered).sign();
        let (status, body) = post(valid.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
        let (status, body) = post(valid).await;
        assert_eq!(status, 401, "a replayed jti is refused: {body}");

        let prefix = if adfs { "MSIS7066" } else { "AADSTS700027" };
        let cases: Vec<(&str, Assertion)> = vec![
            ("missing x5t", Assertion { x5t: None, ..Assertion::valid(&stamp, registered) }),
            (
                "hex x5t",
                Assertion {
                    x5t: Some(registered.thumbprint_hex.clone()),
                    ..Assertion::valid(&stamp, registered)
                },
            ),
            ("wrong aud", Assertion { aud: stamp.login_endpoint(), ..Assertion::valid(&stamp, registered) }),
            ("expired", Assertion { exp_offset_secs: -600, ..Assertion::valid(&stamp, registered) }),
            (
                "different key",
                Assertion {
                    signer: other,
                    x5t: Some(registered.x5t()),
                    ..Assertion::valid(&stamp, registered)
                },
            ),
            ("unregistered certificate", Assertion::valid(&stamp, other)),
            (
                "wrong iss/sub",
                Assertion { client_id: "someone-else".into(), ..Assertion::valid(&stamp, registered) },
            ),
        ];
        for (case, assertion) in cases {
            let (status, body) = post(assertion.sign()).await;
            assert_eq!(status, 401, "{case}: {body}");
            assert_eq!(body["error"], "invalid_client", "{case}");
            let description = body["error_description"].as_str().unwrap();
            assert!(description.starts_with(prefix), "{case}: {description}");
        }
        let (status, body) =
            post(Assertion { x5t: None, ..Assertion::valid(&stamp, registered) }.sign()).await;
        assert!(status == 401 && body["error_description"].as_str().unwrap().contains("x5t"));
    }
}

#[test]
fn test_certificates_have_thumbprints_and_pfx() {
    let (registered, _) = certificates();
    assert_eq!(registered.thumbprint_hex.len(), 40);
    assert!(registered.thumbprint_hex.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
    assert!(registered.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    use base64::Engine as _;
    let pfx = base64::engine::general_purpose::STANDARD
        .decode(registered.pfx_base64("pfx-password").unwrap())
        .unwrap();
    let store = p12_keystore::KeyStore::from_pkcs12(&pfx, "pfx-password").expect("PFX reads back");
    let (_, chain) = store.private_key_chain().expect("key entry");
    assert_eq!(chain.chain()[0].as_der(), registered.certificate_der());
}
