//! End to end: stamp and mapping administration through the real `azs-usage` binary, against the
//! stamp simulator and a real SQLite file.

use crate::common::*;
use stamp_sim::SimAuth;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_import_with_bad_lines_writes_nothing_and_names_every_bad_line() {
    // Given a registered stamp and a file whose lines 1-9 are valid, line 4 has three columns and
    // line 10 breaks the subscription rule
    let world = World::start(|_| vec![spec(0, aad(), 2)], 2, 50).await;
    let id = world.stamp_ids[0].clone();
    let mut lines: Vec<String> =
        (1..=9).map(|n| format!("00000000-0000-4000-8000-{n:012},billing-{n}")).collect();
    lines[3] = "00000000-0000-4000-8000-000000000004,billing-4,extra".into();
    lines.push("tenant/with/slash,billing-10".into());
    let file = world.path("mappings.csv");
    std::fs::write(&file, lines.join("\n")).unwrap();

    // When it is imported
    let out = world.run(&["mapping", "import", &id, file.to_str().unwrap()]).await;

    // Then the import fails naming both lines, and no mapping was written
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("line 4") && err.contains("line 10: externalSubscriptionId"), "{err}");
    let list = world.run(&["mapping", "list", "--json"]).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout(&list)).unwrap(), serde_json::json!([]));

    // And once the file is fixed, every line is imported
    lines[3] = "00000000-0000-4000-8000-000000000004,billing-4".into();
    lines[9] = "00000000-0000-4000-8000-000000000010,billing-10".into();
    std::fs::write(&file, format!("externalSubscriptionId,billingSubscriptionId\n{}", lines.join("\n")))
        .unwrap();
    let out = world.run(&["mapping", "import", &id, file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("imported 10 mappings"), "{}", stdout(&out));
    let list = world.run(&["mapping", "list", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&list)).unwrap().as_array().unwrap().len(),
        10
    );
}

/// `stamp add` of simulator stamp 0 (Azure AD + secret) with the seed's arguments and `extra`.
async fn add_stamp(world: &World, extra: &[&str]) -> std::process::Output {
    let mut args = stamp_add_args(&world.sim.stamp(0), "-", "stamp-0", &world.path("ca.pem"));
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut c = world.cli();
    c.args(&args).env("AZS_USAGE_APPLICATION_SECRET", SECRET);
    tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_and_register_again_resumes_the_same_stamp_and_stores_no_row_twice() {
    // Given a stamp collected up to the horizon
    let world = World::start(|_| vec![spec(0, aad(), 3)], 6, 40).await;
    assert!(world.run(&["collect"]).await.status.success());
    world.assert_complete(0).await;
    let id = world.stamp_ids[0].clone();

    // When it is removed and registered again with the same arguments (collectFrom included)
    let out = world.run(&["stamp", "remove", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let from = world.collect_from.to_rfc3339();
    let refused = add_stamp(&world, &["--collect-from", &from]).await;

    // Then the earlier collectFrom is refused with the reason and the way out, nothing registered
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains("collectFrom") && err.contains("--recollect"), "{err}");
    let list = world.run(&["stamp", "list", "--json"]).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout(&list)).unwrap(), serde_json::json!([]));

    // When it is registered again asking to re-collect, then collected
    let out = add_stamp(&world, &["--collect-from", &from, "--recollect"]).await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains(&format!("registered stamp {id}")), "same id: {}", stdout(&out));
    assert!(world.run(&["collect"]).await.status.success());

    // Then the database holds exactly the simulator's ground truth: no row twice
    world.assert_complete(0).await;

    // And removing and registering again without collectFrom resumes at the watermark
    assert!(world.run(&["stamp", "remove", &id]).await.status.success());
    let out = add_stamp(&world, &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("collects from {}", world.horizon().to_rfc3339())),
        "{}",
        stdout(&out)
    );
    assert!(world.run(&["collect"]).await.status.success());
    world.assert_complete(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamp_is_named_by_its_id_or_its_name_everywhere_and_names_are_unique() {
    // Given two stamps named stamp-0 and stamp-1
    let world = World::start(|_| vec![spec(0, aad(), 2), spec(1, aad(), 2)], 2, 50).await;
    let id = world.stamp_ids[0].clone();

    // Then every command that takes a stamp accepts the name (in any casing) as well as the id
    let show = world.run(&["stamp", "show", "STAMP-0", "--json"]).await;
    assert!(show.status.success(), "{}", stderr(&show));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout(&show)).unwrap()["id"], id.as_str());
    for args in [
        vec!["stamp", "disable", "stamp-1"],
        vec!["stamp", "enable", "stamp-1"],
        vec!["mapping", "set", "stamp-0", "00000000-0000-4000-8000-000000000001", "billing-1"],
        vec!["mapping", "list", "--stamp", "stamp-0"],
        vec!["unmapped", "--stamp", "stamp-0"],
        vec!["collect", "--stamp", "stamp-0", "--stamp", &world.stamp_ids[1]],
    ] {
        let out = world.run(&args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    world.assert_complete(0).await;
    world.assert_complete(1).await;

    // And so do `reprocess`, `verify` and the other commands that work on collected hours (a second
    // resolver once made `reprocess --stamp NAME` fail where `collect --stamp NAME` worked), with the
    // id in any spelling
    let from = world.collect_from.to_rfc3339();
    let to = (world.collect_from + chrono::Duration::hours(1)).to_rfc3339();
    let id_1 = world.stamp_ids[1].to_uppercase();
    let reprocessed = world
        .run(&[
            "reprocess",
            "--stamp",
            "Stamp-0",
            "--from",
            &from,
            "--to",
            &to,
            "--reason",
            "by name",
            "--json",
        ])
        .await;
    assert!(reprocessed.status.success(), "{}", stderr(&reprocessed));
    let report: serde_json::Value = serde_json::from_str(&stdout(&reprocessed)).unwrap();
    assert_eq!(report["summary"]["stampId"], id.as_str());
    let csv = world.database().with_extension("csv");
    for args in [
        vec!["reprocess", "--stamp", &id_1, "--from", &from, "--to", &to, "--dry-run"],
        vec!["verify", "--stamp", "STAMP-0", "--from", &from, "--to", &to],
        vec!["verify", "--stamp", &id_1, "--from", &from, "--to", &to],
        vec!["quarantine", "list", "--stamp", "STAMP-1"],
        vec!["export", "--csv", csv.to_str().unwrap(), "--stamp", "Stamp-1"],
        vec!["stamp", "test", "STAMP-0"],
    ] {
        let out = world.run(&args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    world.assert_complete(0).await;
    let unknown = world
        .run(&["reprocess", "--stamp", "no-such-stamp", "--from", &from, "--to", &to, "--dry-run"])
        .await;
    assert!(!unknown.status.success() && stderr(&unknown).contains("no-such-stamp"), "{}", stderr(&unknown));
    let unknown = world.run(&["stamp", "show", "no-such-stamp"]).await;
    assert!(!unknown.status.success() && stderr(&unknown).contains("no-such-stamp"), "{}", stderr(&unknown));

    // And a second stamp cannot take a name in use, in any casing
    let s = world.sim.stamp(0);
    let mut c = world.cli();
    c.args(["stamp", "add", &s.admin_subscription_id(), &s.tenant_id(), &s.application_id(), "-"])
        .args(["https://adminmanagement.elsewhere.example", "-", "-", "--name", "Stamp-1", "--no-verify"])
        .env("AZS_USAGE_APPLICATION_SECRET", SECRET);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("name: is already the name of stamp"), "{}", stderr(&out));
}

/// `azs-usage stamp update stamp-0 ARGS...` (the stamp named, not numbered), with extra environment.
async fn update(world: &World, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec!["stamp", "update", "stamp-0"];
    all.extend_from_slice(args);
    world.run_with(&all, env).await
}

/// `update` bringing the stamp's application secret along (from the environment), as a change of
/// where the credential goes must.
async fn rebind(world: &World, args: &[&str]) -> std::process::Output {
    let args = [args, &["--application-secret-from-env"]].concat();
    update(world, &args, &[("AZS_USAGE_APPLICATION_SECRET", SECRET)]).await
}

/// Stamp 0 as `stamp show --json` prints it.
async fn shown(world: &World) -> serde_json::Value {
    let out = world.run(&["stamp", "show", &world.stamp_ids[0], "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_field_changes_in_place_keeping_the_watermark_and_collection_stays_exact() {
    // Given an Azure AD stamp that accepts a secret and a certificate, registered with the secret and
    // collected up to four hours ago
    let world = World::start(
        |c| {
            let auth = SimAuth::AzureAd {
                secret: Some(SECRET.into()),
                certificate_pem: Some(c.certificate_pem.clone()),
            };
            vec![spec(0, auth, 3)]
        },
        6,
        40,
    )
    .await;
    let sim = world.sim.stamp(0);
    let collected = world.run_with(&["collect"], &[("AZS_USAGE_SETTLE_DELAY", "4h")]).await;
    assert!(collected.status.success(), "{}", stderr(&collected));
    let watermark = world.watermark(0).await;
    assert!(watermark < world.horizon(), "the first collection stops short of the horizon");
    let before = shown(&world).await;
    let check = |step: &str, out: &std::process::Output, ok: bool| {
        assert_eq!(out.status.success(), ok, "{step}: {}\n{}", stdout(out), stderr(out));
    };

    let localhost = sim.admin_arm_endpoint().replace("127.0.0.1", "localhost");

    // When a field that moves where the credential goes (or whom it speaks for) changes without a new
    // credential, verified or not, it is refused naming the field before the stamp is contacted, and
    // nothing is written
    let contacted = |s: stamp_sim::SimStats| {
        s.metadata_requests + s.openid_requests + s.token_requests + s.usage_requests
    };
    let requests = contacted(sim.stats());
    let wrong = azs_core::StampId::new_random().0;
    for (change, field) in [
        (vec!["--admin-arm-endpoint", &localhost], "adminArmEndpoint"),
        (vec!["--authority-endpoint-url", "https://login.elsewhere.example/"], "authorityEndpointUrl"),
        (vec!["--token-request-resource-url", "https://elsewhere.example/x"], "tokenRequestResourceUrl"),
        (vec!["--application-id", &wrong], "applicationId"),
        (vec!["--tenant-id", &wrong], "tenantId"),
        (vec!["--no-ca"], "caCertificate"),
    ] {
        for verify in [&[][..], &["--no-verify"]] {
            let out = update(&world, &[&change[..], verify].concat(), &[]).await;
            check(field, &out, false);
            let err = stderr(&out);
            assert!(err.contains(field) && err.contains("new credential"), "{field}: {err}");
        }
    }
    assert_eq!(shown(&world).await["connection"], before["connection"]);
    assert_eq!(contacted(sim.stats()), requests, "a refused change contacted the stamp");

    // When the admin ARM endpoint moves (same stamp, another name for its host) with the credential,
    // verified
    let out = rebind(&world, &["--admin-arm-endpoint", &localhost]).await;
    check("endpoint", &out, true);
    let now = shown(&world).await;
    assert_eq!(now["connection"]["adminArmEndpoint"], localhost.as_str());
    assert_eq!(now["id"], before["id"]);
    assert_eq!(world.watermark(0).await, watermark);

    // When the application id or tenant changes to one the stamp refuses, verification fails and
    // nothing is written
    for (flag, field) in [("--application-id", "applicationId"), ("--tenant-id", "tenantId")] {
        let wrong = azs_core::StampId::new_random().0;
        let out = rebind(&world, &[flag, &wrong]).await;
        check(flag, &out, false);
        assert!(stderr(&out).contains("could not be verified"), "{flag}: {}", stderr(&out));
        assert_eq!(shown(&world).await["connection"][field], before["connection"][field]);
        // Without verification the change is stored as given (an operator fixing the stamp's side first)
        check(flag, &rebind(&world, &[flag, &wrong, "--no-verify"]).await, true);
        assert_eq!(shown(&world).await["connection"][field], wrong.as_str());
        // And changed back, verified
        let right = before["connection"][field].as_str().unwrap();
        check(flag, &rebind(&world, &[flag, right]).await, true);
        assert_eq!(shown(&world).await["connection"][field], right);
        assert_eq!(world.watermark(0).await, watermark, "{flag}");
    }

    // When the auth kind is switched to AD FS, discovery contradicts it and nothing is written
    let out = rebind(&world, &["--is-adfs", "true"]).await;
    check("isAdfs", &out, false);
    assert!(stderr(&out).contains("isAdfs"), "{}", stderr(&out));
    assert_eq!(shown(&world).await["connection"]["isAdfs"], false);

    // When the stamp's CA is dropped, TLS to the stamp fails and nothing is written
    let out = rebind(&world, &["--no-ca"]).await;
    check("no CA", &out, false);
    assert!(shown(&world).await["connection"]["caCertificatePem"].is_string());

    // When the credential is a secret name outside the credential prefix, it is refused before the
    // stamp is contacted
    let tokens = sim.stats().token_requests;
    let out = update(&world, &["--credential-secret-name", "elsewhere/database"], &[]).await;
    check("credentialSecretName", &out, false);
    assert!(stderr(&out).contains("credentialSecretName"), "{}", stderr(&out));
    assert_eq!(sim.stats().token_requests, tokens, "no token request for a refused secret name");

    // When the credential becomes the certificate, then the secret again, both verified
    let client = world.path("client.pem").display().to_string();
    let thumbprint = world.certificate.thumbprint_hex.clone();
    let out =
        update(&world, &["--certificate-file", &client, "--certificate-thumbprint", &thumbprint], &[]).await;
    check("certificate", &out, true);
    let now = shown(&world).await;
    assert_eq!(now["connection"]["certificateThumbprint"], thumbprint.to_uppercase().as_str());
    assert_eq!(now["credentialSecretName"], before["credentialSecretName"], "the credential keeps its name");
    let out =
        update(&world, &["--application-secret-from-env"], &[("AZS_USAGE_APPLICATION_SECRET", SECRET)]).await;
    check("secret", &out, true);
    assert!(shown(&world).await["connection"]["certificateThumbprint"].is_null());

    // When the query mode becomes per-subscriber, verified
    check("queryMode", &update(&world, &["--query-mode", "per-subscriber"], &[]).await, true);
    let now = shown(&world).await;
    assert_eq!(now["queryMode"], "per-subscriber");
    assert_eq!(now["id"], before["id"]);
    assert_eq!(now["status"]["watermark"], before["status"]["watermark"]);
    assert_eq!(world.watermark(0).await, watermark);

    // Then the next collection resumes at the watermark through the changed connection, and the
    // database holds exactly the simulator's ground truth: no hour missing, no row twice
    let collected = world.run(&["collect"]).await;
    assert!(collected.status.success(), "{}", stderr(&collected));
    world.assert_complete(0).await;
}

/// A per-subscriber stamp too large to be asked whole within the connection test's 25 s budget: 1,000
/// tenant subscriptions answered after 300 ms each take 37.5 s at the default 8 queries at once. The
/// test asks the tenant list and one round of subscribers, so switching it to per-subscriber mode with
/// verification succeeds (it used to time out, and the README told operators to pass `--no-verify`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_per_subscriber_stamp_is_verified_by_its_tenant_list_and_one_round_of_subscribers() {
    let slow = |_: &_| {
        vec![stamp_sim::StampSpec {
            page_delay: std::time::Duration::from_millis(300),
            ..spec(0, aad(), 1000)
        }]
    };
    let world = World::start(slow, 2, 1000).await;

    let out = world.run(&["stamp", "update", "stamp-0", "--query-mode", "per-subscriber"]).await;

    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let shown = world.run(&["stamp", "show", "stamp-0", "--json"]).await;
    let stamp: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(stamp["queryMode"], "per-subscriber", "{stamp}");
}
