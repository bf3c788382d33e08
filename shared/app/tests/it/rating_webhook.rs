//! Price books, assignments and statements through the webhook, over real HTTP on a real SQLite
//! store: what the CLI does, with the webhook's token, paging and problem details.

use crate::statements::{november, priced};
use azs_app::administration::Administration;
use azs_app::rating::StatementService;
use azs_app::webhook::{ApiAuth, router};
use azs_azure_stack::{AzureStackClient, ClientSettings, credential_from_registration};
use azs_core::Secret;
use azs_core::rating::{Statement, StatementSettings};
use azs_core::registration::CredentialSecretRules;
use azs_secrets::FileSecretStore;
use azs_store_sqlite::SqliteStore;
use reqwest::{Method, StatusCode};
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
