//! Price books, assignments and statements through the webhook, over real HTTP on a real SQLite
//! store: what the CLI does, with the webhook's token, paging and problem details.

use crate::statements::{november, priced, standard};
use azs_app::administration::Administration;
use azs_app::rating::StatementService;
use azs_app::statement_pass::Covered;
use azs_app::webhook::{ApiAuth, router};
use azs_azure_stack::{AzureStackClient, ClientSettings, credential_from_registration};
use azs_core::Secret;
use azs_core::rating::ports::PriceBookStore;
use azs_core::rating::{Statement, StatementSettings};
use azs_core::registration::CredentialSecretRules;
use azs_secrets::FileSecretStore;
use azs_store_sqlite::SqliteStore;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::sync::Arc;

const TOKEN: &str = "rating-webhook-token-5d2a9e";

struct Api {
    base: String,
    client: reqwest::Client,
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    link: Option<String>,
    body: Value,
}

impl Reply {
    /// `(field, rule)` of a problem with `status` (400: not what the document describes; 422: well
    /// formed, against a rule), after checking it is one.
    fn field_errors(&self, status: StatusCode) -> Vec<(String, String)> {
        assert_eq!(self.status, status, "{}", self.body);
        self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors member: {}", self.body))
            .iter()
            .map(|e| (e["field"].as_str().unwrap().to_owned(), e["rule"].as_str().unwrap().to_owned()))
            .collect()
    }
}

impl Api {
    async fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_in_memory().unwrap();
        let mut administration = Administration::new(
            Arc::new(store.clone()),
            Arc::new(FileSecretStore::new(dir.path().join("secrets.json"), "azs-usage/")),
            Arc::new(AzureStackClient::new(ClientSettings::default())),
            credential_from_registration,
            CredentialSecretRules::new("azs-usage/", ["azs-usage/database".to_owned()]),
        );
        administration.statements = Some(Arc::new(StatementService {
            store: Arc::new(store.clone()),
            rating: Arc::new(store.clone()),
            settings: StatementSettings::default(),
        }));
        let app = router(administration, ApiAuth::Bearer(Secret::new(TOKEN)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api { base, client: reqwest::Client::new(), store, _dir: dir }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        let res = request.send().await.expect("the webhook answers");
        let status = res.status();
        let link = res.headers().get("link").map(|v| v.to_str().unwrap().to_owned());
        let body = res.json().await.unwrap_or(Value::Null);
        Reply { status, link, body }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    /// A GET with `Accept: accept`, answered as text with its headers.
    async fn get_as(&self, path: &str, accept: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header("accept", accept)
            .send()
            .await
            .expect("the webhook answers");
        let (status, headers) = (res.status(), res.headers().clone());
        (status, headers, res.text().await.unwrap())
    }
}

fn book(id: &str, unit_price: &str) -> Value {
    json!({"id": id, "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
        {"version": 1, "effectiveFrom": "2020-01-01T00:00:00Z", "meters": [
            {"meterId": "fab6eb84-500b-4a09-a8ca-7358f8bbaea5", "price": {"kind": "unit", "unitPrice": unit_price}}]}]})
}

#[tokio::test]
async fn price_books_import_list_and_show_and_a_stored_version_is_never_edited() {
    let api = Api::start().await;

    // When a book is imported, then again unchanged
    let reply = api.call(Method::POST, "/price-books", Some(&book("standard", "0.50"))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body, json!({"id": "standard", "versionsAdded": 1}));
    let reply = api.call(Method::POST, "/price-books", Some(&book("standard", "0.50"))).await;
    assert_eq!((reply.status, &reply.body["versionsAdded"]), (StatusCode::OK, &json!(0)));

    // Then the same version with another price is refused, naming the rule
    let reply = api.call(Method::POST, "/price-books", Some(&book("standard", "0.60"))).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.body["detail"].as_str().unwrap().contains("never edited"), "{}", reply.body);

    // And a well-formed book breaking a rule is a 422 naming the field, one not a book a 400
    let reply = api.call(Method::POST, "/price-books", Some(&book("bad", "-1"))).await;
    let fields: Vec<String> =
        reply.field_errors(StatusCode::UNPROCESSABLE_ENTITY).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["versions[0].meters[0].price.unitPrice"]);
    let reply = api.call(Method::POST, "/price-books", Some(&json!({"id": "x", "currency": "EUR"}))).await;
    assert_eq!(reply.field_errors(StatusCode::BAD_REQUEST)[0].0, "currency");

    // And listing pages by id, and one book shows whole
    api.call(Method::POST, "/price-books", Some(&book("premium", "0.90"))).await;
    let first = api.get("/price-books?limit=1").await;
    assert_eq!(first.body.as_array().unwrap().len(), 1);
    assert_eq!(first.body[0]["id"], "premium");
    let next = first.link.expect("a next link");
    let path = next.trim_start_matches('<').split('>').next().unwrap().to_owned();
    let second = api.get(&path).await;
    assert_eq!(second.body[0]["id"], "standard");
    assert!(second.link.is_none());
    let shown = api.get("/price-books/standard").await;
    assert_eq!(shown.body["versions"][0]["meters"][0]["price"]["unitPrice"], "0.50");
    assert_eq!(api.get("/price-books/none").await.status, StatusCode::NOT_FOUND);

    // And two versions diff as the CLI prints them; a version the book lacks is not found
    let mut two = book("standard", "0.50");
    let mut second = two["versions"][0].clone();
    second["version"] = json!(2);
    second["effectiveFrom"] = json!("2026-12-01T00:00:00Z");
    second["meters"][0]["price"]["unitPrice"] = json!("0.55");
    two["versions"].as_array_mut().unwrap().push(second);
    assert_eq!(api.call(Method::POST, "/price-books", Some(&two)).await.status, StatusCode::CREATED);
    let diff = api.get("/price-books/standard/diff?from=1&to=2").await;
    assert_eq!(diff.status, StatusCode::OK, "{}", diff.body);
    let lines: Vec<&str> =
        diff.body["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("version 1 (2020-01-01T00:00:00+00:00) -> version 2"), "{lines:?}");
    assert!(
        lines[1].starts_with("~ FAB6EB84500B4A09A8CA7358F8BBAEA5 ") && lines[1].contains("0.55"),
        "{lines:?}"
    );
    assert_eq!(api.get("/price-books/standard/diff?from=1&to=9").await.status, StatusCode::NOT_FOUND);
    let missing = api.get("/price-books/standard/diff?from=1").await;
    assert_eq!(missing.field_errors(StatusCode::BAD_REQUEST)[0].0, "to");

    // And none of it without the token
    let anonymous = reqwest::get(format!("{}/price-books", api.base)).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_assignment_names_an_imported_book_and_a_whole_hour() {
    let api = Api::start().await;
    api.call(Method::POST, "/price-books", Some(&book("standard", "0.50"))).await;

    let default = json!({"bookId": "standard", "effectiveFrom": "2020-01-01T00:00:00Z"});
    let reply = api.call(Method::PUT, "/assignments", Some(&default)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let custom = json!({"billingSubscriptionId": "cust-a", "bookId": "standard", "effectiveFrom": "2026-11-01T00:00:00Z"});
    api.call(Method::PUT, "/assignments", Some(&custom)).await;
    let listed = api.get("/assignments").await;
    assert_eq!(listed.body, json!([default, custom]));

    let unknown = json!({"bookId": "none", "effectiveFrom": "2020-01-01T00:00:00Z"});
    let fields = api
        .call(Method::PUT, "/assignments", Some(&unknown))
        .await
        .field_errors(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields, [("bookId".to_owned(), "must name an imported price book".to_owned())]);
    let mid_hour = json!({"bookId": "standard", "effectiveFrom": "2020-01-01T00:30:00Z"});
    let fields = api
        .call(Method::PUT, "/assignments", Some(&mid_hour))
        .await
        .field_errors(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["effectiveFrom"]);
}

#[tokio::test]
async fn a_complete_statement_finalises_and_one_with_a_stamp_behind_answers_409_with_why() {
    // Given November collected and verified for cust-ready, and cust-behind's stamp behind
    let api = Api::start().await;
    priced(&api.store).await;
    let behind = november(&api.store).await;

    // When each is finalised
    let ready = api.call(Method::POST, "/statements/cust-ready/2026-11/finalize", None).await;
    let blocked = api.call(Method::POST, "/statements/cust-behind/2026-11/finalize", None).await;

    // Then the complete one is final, totalling 3 hours at 0.50
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let statement: Statement = serde_json::from_value(ready.body.clone()).unwrap();
    assert!(statement.is_final());
    assert_eq!(statement.total.to_string(), "1.50");

    // And the other is a 409 whose blockers name the stamp behind, kept as a draft
    assert_eq!(blocked.status, StatusCode::CONFLICT, "{}", blocked.body);
    let blockers = blocked.body["blockers"].as_array().unwrap();
    assert!(
        blockers.iter().any(|b| b.as_str().unwrap().contains(&format!("stamp {behind} is collected to")))
    );
    let listed = api.get("/statements?month=2026-11").await;
    let listed: Vec<Statement> = serde_json::from_value(listed.body).unwrap();
    assert_eq!(
        listed.iter().map(|s| (s.billing_subscription_id.as_str(), s.is_final())).collect::<Vec<_>>(),
        [("cust-behind", false), ("cust-ready", true)]
    );

    // And showing the final one gives it unchanged
    let shown: Statement =
        serde_json::from_value(api.get("/statements/cust-ready/2026-11").await.body).unwrap();
    assert_eq!(shown, statement);

    // And bad input is named, an unknown customer is not found
    assert_eq!(
        api.get("/statements?month=2026-13").await.field_errors(StatusCode::BAD_REQUEST)[0].0,
        "month"
    );
    assert_eq!(
        api.get("/statements/cust-ready/11-2026").await.field_errors(StatusCode::BAD_REQUEST)[0].0,
        "month"
    );
    assert_eq!(api.get("/statements/cust-nobody/2026-11").await.status, StatusCode::NOT_FOUND);
}

/// A CSV answer's records as column -> cell maps.
fn records(csv: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    reader
        .records()
        .map(|r| header.iter().cloned().zip(r.unwrap().iter().map(str::to_owned)).collect())
        .collect()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}")).parse().unwrap()
}

#[tokio::test]
async fn a_statement_answers_json_csv_or_html_as_accept_asks_and_none_of_them_carries_cost() {
    // Given November's statement for cust-ready (3 hours at 0.50 EUR) and a cost book
    let api = Api::start().await;
    priced(&api.store).await;
    november(&api.store).await;
    api.store.add_book_versions(&standard("operator-cost", &[])).await.unwrap();
    let path = "/statements/cust-ready/2026-11";

    // When it is asked for as JSON, CSV and HTML
    let (status, headers, json) = api.get_as(path, "application/json").await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(headers["vary"], "accept");
    let json: Value = serde_json::from_str(&json).unwrap();
    let (status, headers, csv) = api.get_as(path, "text/csv").await;
    assert_eq!(
        (status, headers["content-type"].to_str().unwrap()),
        (StatusCode::OK, "text/csv; charset=utf-8")
    );
    let (status, headers, html) = api.get_as(path, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8").await;
    assert_eq!(
        (status, headers["content-type"].to_str().unwrap()),
        (StatusCode::OK, "text/html; charset=utf-8")
    );
    assert!(headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));

    // Then the CSV's records add up to the JSON's total, and the page shows it
    assert_eq!(dec(&json["total"]), Decimal::new(150, 2));
    let records = records(&csv);
    let amounts: Decimal = records
        .iter()
        .filter(|r| ["usage", "correction", "fee", "tax"].contains(&r["record"].as_str()))
        .map(|r| r["amount"].parse::<Decimal>().unwrap())
        .sum();
    assert_eq!(amounts, dec(&json["total"]));
    let total = records.iter().find(|r| r["record"] == "total" && r["component"] == "total").unwrap();
    assert_eq!(total["amount"], json["total"].as_str().unwrap());
    assert!(html.contains(r#"id="total">1.50</td>"#), "{html}");

    // And none of the customer's answers names a cost or a margin (the page's CSS aside)
    let page = html.split("</style>").nth(1).unwrap();
    for (name, text) in [("JSON", json.to_string()), ("CSV", csv), ("HTML", page.to_owned())] {
        let lower = text.to_lowercase();
        assert!(!lower.contains("cost") && !lower.contains("margin"), "{name}: {text}");
    }

    // And a representation the statement does not have is a 406 problem listing those it has
    let (status, headers, body) = api.get_as(path, "application/xml").await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(body.contains("text/csv"), "{body}");
}

#[tokio::test]
async fn margin_of_one_statement_and_of_the_month_and_without_a_cost_book_a_422_naming_month() {
    // Given November for two customers, and no cost book yet
    let api = Api::start().await;
    priced(&api.store).await;
    november(&api.store).await;

    // When margin is asked for, then it is a 422 naming month and the book to import
    for path in ["/statements/cust-ready/2026-11/margin", "/margin?month=2026-11"] {
        let fields = api.get(path).await.field_errors(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields[0].0, "month", "{path}");
        assert!(fields[0].1.contains("\"operator-cost\""), "{path}: {fields:?}");
    }

    // Given the cost book: VM hours cost the operator 0.30 EUR
    let mut cost = standard("operator-cost", &[]);
    cost.versions[0].meters[0].price = azs_core::rating::Price::Unit { unit_price: Decimal::new(30, 2) };
    api.store.add_book_versions(&cost).await.unwrap();

    // When one statement's margin is asked for
    let one = api.get("/statements/cust-ready/2026-11/margin").await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);

    // Then it is cust-ready's 3 hours: revenue 1.50, cost 0.90, margin 0.60, on its stamp
    assert_eq!(
        (one.body["billingSubscriptionId"].as_str(), one.body["state"].as_str()),
        (Some("cust-ready"), Some("draft"))
    );
    let lines = one.body["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{}", one.body);
    assert_eq!(
        (dec(&lines[0]["revenue"]), dec(&lines[0]["cost"]), dec(&lines[0]["margin"])),
        (Decimal::new(150, 2), Decimal::new(90, 2), Decimal::new(60, 2))
    );
    assert_eq!(dec(&one.body["margin"]), Decimal::new(60, 2));

    // And the month's margin adds cust-behind's 2 hours on its own stamp
    let month = api.get("/margin?month=2026-11").await;
    assert_eq!(month.status, StatusCode::OK, "{}", month.body);
    assert_eq!(month.body["lines"].as_array().unwrap().len(), 2);
    assert_eq!(
        (dec(&month.body["revenue"]), dec(&month.body["cost"]), dec(&month.body["margin"])),
        (Decimal::new(250, 2), Decimal::new(150, 2), Decimal::new(100, 2))
    );

    // And bad input is named: no month, a malformed one; an unknown customer is not found
    assert_eq!(
        api.get("/margin").await.field_errors(StatusCode::BAD_REQUEST)[0],
        ("month".to_owned(), "is required: a month as YYYY-MM".to_owned())
    );
    assert_eq!(api.get("/margin?month=2026-13").await.field_errors(StatusCode::BAD_REQUEST)[0].0, "month");
    assert_eq!(api.get("/statements/cust-nobody/2026-11/margin").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_rerate_is_a_what_if_until_confirmed_and_a_month_not_final_is_a_422_naming_month() {
    // Given cust-ready's November final at 0.50, then a version pricing VM hours at 0.60 from 1 November
    let api = Api::start().await;
    priced(&api.store).await;
    november(&api.store).await;
    let finalised = api.call(Method::POST, "/statements/cust-ready/2026-11/finalize", None).await;
    assert_eq!(finalised.status, StatusCode::OK, "{}", finalised.body);
    api.store.add_book_versions(&standard("standard", &[("2026-11-01T00:00:00Z", "0.60")])).await.unwrap();
    let statements_before = api.get("/statements").await.body;

    // When the rerate is asked for without confirming
    let what_if = api.call(Method::POST, "/statements/cust-ready/2026-11/rerate", None).await;

    // Then it shows 3 hours at 0.10 more, and nothing is written
    assert_eq!(what_if.status, StatusCode::OK, "{}", what_if.body);
    assert_eq!(dec(&what_if.body["rerate"]["difference"]), Decimal::new(30, 2));
    assert_eq!(what_if.body["statement"], Value::Null);
    assert_eq!(api.get("/statements").await.body, statements_before);

    // When it is confirmed
    let confirmed = api.call(Method::POST, "/statements/cust-ready/2026-11/rerate?confirm=true", None).await;

    // Then the next open statement (December) carries the correction naming November, and
    // November's final statement is unchanged
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let december: Statement = serde_json::from_value(confirmed.body["statement"].clone()).unwrap();
    assert_eq!(december.month.to_string(), "2026-12");
    let corrections: Vec<_> = december.lines.iter().filter(|l| l.corrects.is_some()).collect();
    assert_eq!(corrections.len(), 1);
    assert_eq!(
        (corrections[0].corrects.unwrap().to_string(), corrections[0].amount),
        ("2026-11".to_owned(), Decimal::new(30, 2))
    );
    let november_now = api.get("/statements/cust-ready/2026-11").await.body;
    assert_eq!(november_now, finalised.body);

    // And a month whose statement is a draft is a 422 naming month; a bad confirm a 400 naming it
    let fields = api
        .call(Method::POST, "/statements/cust-behind/2026-11/rerate", None)
        .await
        .field_errors(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields[0].0, "month");
    assert!(fields[0].1.contains("final"), "{fields:?}");
    let fields = api
        .call(Method::POST, "/statements/cust-ready/2026-11/rerate?confirm=yes", None)
        .await
        .field_errors(StatusCode::BAD_REQUEST);
    assert_eq!(fields, [("confirm".to_owned(), "must be true or false".to_owned())]);
    assert_eq!(
        api.call(Method::POST, "/statements/cust-nobody/2026-11/rerate", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_focus_export_of_a_month_is_the_stored_statements_as_focus_csv() {
    // Given November's two statements kept
    let api = Api::start().await;
    priced(&api.store).await;
    november(&api.store).await;
    for customer in ["cust-ready", "cust-behind"] {
        assert_eq!(api.get(&format!("/statements/{customer}/2026-11")).await.status, StatusCode::OK);
    }

    // When the month is exported with the operator's name
    let (status, headers, csv) =
        api.get_as("/focus?month=2026-11&issuer=Contoso%20Hosting", "text/csv").await;

    // Then it is FOCUS CSV: one usage row per statement line, billed as the statements total
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let rows = records(&csv);
    assert_eq!(csv.split("\r\n").next().unwrap(), azs_core::rating::focus::COLUMNS.join(","));
    let billed: Decimal = rows.iter().map(|r| r["BilledCost"].parse::<Decimal>().unwrap()).sum();
    assert_eq!(billed, Decimal::new(250, 2));
    assert!(
        rows.iter()
            .all(|r| r["InvoiceIssuerName"] == "Contoso Hosting" && r["BillingAccountId"] == "azs-usage")
    );
    let invoices: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["InvoiceId"].as_str()).collect();
    assert_eq!(invoices.into_iter().collect::<Vec<_>>(), ["cust-behind/2026-11", "cust-ready/2026-11"]);

    // And bad input is named
    assert_eq!(api.get("/focus").await.field_errors(StatusCode::BAD_REQUEST)[0].0, "month");
    assert_eq!(
        api.get("/focus?month=2026-11&issuer=a%0Ab").await.field_errors(StatusCode::BAD_REQUEST)[0].0,
        "issuer"
    );
}

/// `n` customers on one stamp collected over November, customer `i` with `i + 1` VM hours; their
/// ids mix cases so that pages must follow byte order (`Cust-…` before `cust-…`). Answers the ids
/// in that order.
async fn many_customers(store: &SqliteStore, n: usize) -> Vec<String> {
    use azs_store_conformance::fixtures::{advance, registered_and_leased, vm_usage};
    let stamp = registered_and_leased(store, "many").await;
    let mut customers = Vec::new();
    let mut rows = Vec::new();
    for i in 0..n {
        let tenant = format!("{i:08x}-1111-4222-8333-444455556666");
        let customer = if i % 3 == 0 { format!("Cust-{i:03}") } else { format!("cust-{i:03}") };
        crate::statements::map(store, &stamp.id, &tenant, &customer).await;
        let quantity = (i + 1).to_string();
        rows.push(vm_usage(
            &tenant,
            &format!("vm-{i}"),
            &format!("2026-11-{:02}T05:00:00Z", i % 28 + 1),
            &quantity,
        ));
        customers.push(customer);
    }
    let november = crate::statements::window("2026-11-01T00:00:00Z", "2026-12-02T00:00:00Z");
    advance(store, &stamp.id, november, &rows).await;
    customers.sort();
    customers
}

/// The target of a `Link: <…>; rel="next"` header.
fn next_target(link: &str) -> String {
    let target = link.strip_prefix('<').and_then(|l| l.split_once(">; rel=\"next\"")).map(|(t, _)| t);
    target.unwrap_or_else(|| panic!("not a next link: {link}")).to_owned()
}

#[tokio::test]
async fn the_focus_export_pages_by_billing_subscription_and_its_pages_add_up_to_the_whole_month() {
    // Given November's statements of seven customers kept
    let api = Api::start().await;
    priced(&api.store).await;
    let customers = many_customers(&api.store, 7).await;
    for customer in &customers {
        let path = format!("/statements/{customer}/2026-11");
        assert_eq!(api.get(&path).await.status, StatusCode::OK, "{path}");
    }

    // When the month is read as one page, then walked three customers at a time
    let (status, headers, whole) = api.get_as("/focus?month=2026-11&limit=500", "text/csv").await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert!(headers.get("link").is_none(), "one page holds the month");
    let mut pages = Vec::new();
    let mut next = Some("/focus?month=2026-11&limit=3".to_owned());
    while let Some(path) = next.take() {
        let (status, headers, csv) = api.get_as(&path, "text/csv").await;
        assert_eq!(status, StatusCode::OK, "{path}: {csv}");
        next = headers.get("link").map(|l| next_target(l.to_str().unwrap()));
        pages.push(csv);
    }

    // Then there are three pages, each a whole CSV with its header row, covering 3, 3 and 1
    // customers in byte order, and their data rows in order are exactly the whole month's
    let header = format!("{}\r\n", azs_core::rating::focus::COLUMNS.join(","));
    assert_eq!(pages.len(), 3);
    let invoices = |csv: &str| -> Vec<String> {
        let mut ids: Vec<String> = records(csv).iter().map(|r| r["InvoiceId"].clone()).collect();
        ids.dedup();
        ids
    };
    let per_page: Vec<Vec<String>> = pages.iter().map(|p| invoices(p)).collect();
    let expected: Vec<Vec<String>> =
        customers.chunks(3).map(|c| c.iter().map(|id| format!("{id}/2026-11")).collect()).collect();
    assert_eq!(per_page, expected);
    let data: String = pages
        .iter()
        .map(|p| p.strip_prefix(&header).unwrap_or_else(|| panic!("no header row: {p}")))
        .collect();
    assert_eq!(format!("{header}{data}"), whole);
    assert_eq!(records(&whole).len(), 7);

    // And a cursor past the last customer is a page with the header row alone
    let cursor: String = "cust-~".bytes().map(|b| format!("{b:02x}")).collect();
    let (status, headers, past) =
        api.get_as(&format!("/focus?month=2026-11&cursor={cursor}"), "text/csv").await;
    assert_eq!((status, past.as_str()), (StatusCode::OK, header.as_str()));
    assert!(headers.get("link").is_none());

    // And a cursor we never handed out (a control byte, not UTF-8) is still a position: before them all
    let (status, _, from_start) = api.get_as("/focus?month=2026-11&cursor=00ff&limit=500", "text/csv").await;
    assert_eq!((status, from_start), (StatusCode::OK, whole.clone()));

    // And the page size holds: a FOCUS row takes about this many bytes, so the largest page of
    // typical statements (4 lines, a fee, a tax) stays well within the page's byte budget
    let per_row = (whole.len() - header.len()) / 7;
    println!("FOCUS bytes per row: {per_row}, header {}", header.len());
    let largest = azs_app::webhook::FOCUS_MAX_LIMIT * 6 * per_row;
    assert!(largest < azs_app::webhook::FOCUS_PAGE_BYTES, "{largest} bytes");

    // And a bad limit or cursor is a 400 naming it and the rule
    for (query, field) in
        [("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"), ("cursor=zz", "cursor")]
    {
        let fields =
            api.get(&format!("/focus?month=2026-11&{query}")).await.field_errors(StatusCode::BAD_REQUEST);
        assert_eq!(fields[0].0, field, "{query}");
    }
    assert_eq!(
        api.get("/focus?month=2026-11&limit=501").await.field_errors(StatusCode::BAD_REQUEST)[0].1,
        "must be a whole number from 1 to 500"
    );
}

#[tokio::test]
async fn the_months_margin_pages_by_billing_subscription_and_its_pages_add_up_to_the_clis_whole_month() {
    // Given seven customers' November and the cost book (VM hours at 0.30 EUR)
    let api = Api::start().await;
    priced(&api.store).await;
    let customers = many_customers(&api.store, 7).await;
    let mut cost = standard("operator-cost", &[]);
    cost.versions[0].meters[0].price = azs_core::rating::Price::Unit { unit_price: Decimal::new(30, 2) };
    api.store.add_book_versions(&cost).await.unwrap();

    // When the month's margin is walked three customers at a time
    let mut pages = Vec::new();
    let mut next = Some("/margin?month=2026-11&limit=3".to_owned());
    while let Some(path) = next.take() {
        let reply = api.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        next = reply.link.as_deref().map(next_target);
        pages.push(reply.body);
    }

    // Then each page names the customers it counted, 3, 3 and 1 in byte order
    let covered: Vec<(String, String, u64)> = pages
        .iter()
        .map(|p| {
            let id = |k: &str| p[k].as_str().unwrap_or_else(|| panic!("{k}: {p}")).to_owned();
            (
                id("firstBillingSubscriptionId"),
                id("lastBillingSubscriptionId"),
                p["billingSubscriptions"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, u64)> =
        customers.chunks(3).map(|c| (c[0].clone(), c[c.len() - 1].clone(), c.len() as u64)).collect();
    assert_eq!(covered, expected);

    // And the pages add up, line by line and in total, to the month's one report as the CLI works it out
    let service = StatementService {
        store: Arc::new(api.store.clone()),
        rating: Arc::new(api.store.clone()),
        settings: StatementSettings::default(),
    };
    let month = "2026-11".parse().unwrap();
    let whole =
        azs_app::margin::month_margin(&service, month, &Covered::Every, chrono::Utc::now()).await.unwrap();
    assert_eq!((whole.billing_subscriptions, whole.more), (7, false));
    let whole = whole.report;
    let mut lines: std::collections::BTreeMap<(String, String), (Decimal, Decimal)> = Default::default();
    let (mut revenue, mut cost) = (Decimal::ZERO, Decimal::ZERO);
    for page in &pages {
        for line in page["lines"].as_array().unwrap() {
            let key =
                (line["meterId"].as_str().unwrap().to_owned(), line["stampId"].as_str().unwrap().to_owned());
            let sums = lines.entry(key).or_default();
            sums.0 += dec(&line["exactRevenue"]);
            sums.1 += dec(&line["exactCost"]);
        }
        revenue += dec(&page["revenue"]);
        cost += dec(&page["cost"]);
    }
    let whole_lines: std::collections::BTreeMap<(String, String), (Decimal, Decimal)> = whole
        .lines
        .iter()
        .map(|l| ((l.meter_id.clone(), l.stamp_id.to_string()), (l.exact_revenue, l.exact_cost)))
        .collect();
    assert_eq!(lines, whole_lines);
    // 28 VM hours: 14.00 EUR billed, 8.40 EUR charged
    assert_eq!((revenue, cost), (Decimal::new(1400, 2), Decimal::new(840, 2)));
    assert_eq!((whole.revenue, whole.cost, whole.margin), (revenue, cost, revenue - cost));

    // And a page past the last customer counts none and says so
    let cursor: String = "cust-~".bytes().map(|b| format!("{b:02x}")).collect();
    let past = api.get(&format!("/margin?month=2026-11&cursor={cursor}")).await;
    assert_eq!(past.status, StatusCode::OK, "{}", past.body);
    assert_eq!(
        (
            &past.body["firstBillingSubscriptionId"],
            &past.body["billingSubscriptions"],
            &past.body["lines"],
            &past.link
        ),
        (&Value::Null, &json!(0), &json!([]), &None)
    );

    // And a bad limit or cursor is a 400 naming it and the rule
    for (query, field) in [("limit=0", "limit"), ("limit=1001", "limit"), ("cursor=abc", "cursor")] {
        let fields =
            api.get(&format!("/margin?month=2026-11&{query}")).await.field_errors(StatusCode::BAD_REQUEST);
        assert_eq!(fields[0].0, field, "{query}");
    }
}
