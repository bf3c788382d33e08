//! Credentials go to the secret store and nowhere else: not to a log line (at trace level), not to a
//! response, not to the database file, not to an export.

use crate::common::*;
use std::io::Read;
use std::process::Stdio;

/// Distinctive pieces of the secret material to look for.
fn needles(world: &World) -> Vec<String> {
    // Three whole base64 lines of the private key: any copy of the PEM text contains them.
    let key_lines: Vec<&str> =
        world.certificate.private_key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut n = vec![SECRET.to_owned()];
    for i in [1, 5, 10] {
        n.push(key_lines[i].to_owned());
    }
    n
}

fn assert_absent(what: &str, haystack: &[u8], needles: &[String]) {
    let text = String::from_utf8_lossy(haystack);
    for needle in needles {
        assert!(!text.contains(needle.as_str()), "secret material found in {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_material_is_found_only_in_the_secret_store() {
    // Given two stamps registered through the CLI (a secret, and a certificate with its key), and a
    // third registered over HTTP through `azs-usage serve`
    let world =
        World::start(|cert| vec![spec(0, aad(), 3), spec(1, adfs(cert), 3), spec(2, aad(), 2)], 4, 50).await;
    let needles = needles(&world);
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = world
        .cli()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--insecure-loopback"])
        .env("AZS_USAGE_LOG", "trace")
        .env("AZS_USAGE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if http.get(format!("{base}/stamps")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let s = world.sim.stamp(2);
    let body = serde_json::json!({
        "name": "over-http", "adminSubscriptionId": s.admin_subscription_id(), "tenantId": s.tenant_id(),
        "applicationId": s.application_id(), "adminArmEndpoint": s.admin_arm_endpoint(),
        "applicationSecret": SECRET, "caCertificate": world.sim.ca_pem(),
        "collectFrom": world.collect_from.to_rfc3339(),
    });
    // The same stamp is already registered through the CLI: 409 must not echo the secret either.
    let conflict = http.post(format!("{base}/stamps")).json(&body).send().await.unwrap();
    assert_eq!(conflict.status(), 409);
    outputs.push(("409 response".into(), conflict.bytes().await.unwrap().to_vec()));
    let mut bad = body.clone();
    bad["adminSubscriptionId"] = "not-a-guid".into();
    let invalid = http.post(format!("{base}/stamps")).json(&bad).send().await.unwrap();
    assert_eq!(invalid.status(), 400);
    outputs.push(("400 response".into(), invalid.bytes().await.unwrap().to_vec()));
    let list = http.get(format!("{base}/stamps")).send().await.unwrap();
    outputs.push(("GET /stamps".into(), list.bytes().await.unwrap().to_vec()));

    // When a collection runs at trace level, and everything is shown and exported
    let mut collect = world.cli();
    collect.arg("collect").env("AZS_USAGE_LOG", "trace").env("AZS_USAGE_LOG_FORMAT", "json");
    let out = tokio::task::spawn_blocking(move || collect.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stderr.len() > 1000, "trace logging produced little output: the test would prove nothing");
    outputs.push(("collect stdout".into(), out.stdout));
    outputs.push(("collect logs".into(), out.stderr));
    for args in
        [vec!["status", "--json"], vec!["stamp", "list", "--json"], vec!["mapping", "list"], vec!["unmapped"]]
    {
        let out = world.run(&args).await;
        outputs.push((args.join(" "), [out.stdout, out.stderr].concat()));
    }
    let show = world.run(&["stamp", "show", &world.stamp_ids[1], "--json"]).await;
    outputs.push(("stamp show".into(), show.stdout));
    let csv = world.path("export.csv");
    assert!(world.run(&["export", "--csv", csv.to_str().unwrap()]).await.status.success());
    outputs.push(("export".into(), std::fs::read(&csv).unwrap()));
    let _ = server.kill();
    let _ = server.wait();
    let (mut so, mut se) = (Vec::new(), Vec::new());
    server.stdout.take().unwrap().read_to_end(&mut so).unwrap();
    server.stderr.take().unwrap().read_to_end(&mut se).unwrap();
    outputs.push(("serve logs".into(), [so, se].concat()));

    // Then the secret material is nowhere but in the secret store
    for (what, bytes) in &outputs {
        assert_absent(what, bytes, &needles);
    }
    for file in std::fs::read_dir(world.dir.path()).unwrap() {
        let path = file.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "secrets.json" || name == "client.pem" {
            continue; // the secret store itself, and the operator's own certificate file
        }
        assert_absent(&name, &std::fs::read(&path).unwrap(), &needles);
    }
    let store = std::fs::read_to_string(world.path("secrets.json")).unwrap();
    assert!(store.contains(SECRET), "the secret store holds the application secret");
    assert!(store.contains(&needles[1]), "the secret store holds the private key");
}
