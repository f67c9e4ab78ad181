//! The API keys page: create (secret shown once), list, revoke, scopes and isolation.

use axum::http::StatusCode;
use store::{Backend, Scope};

use crate::TestApp;

/// The secret shown in `#new-key-secret`, if the page has one.
fn shown_secret(html: &str) -> Option<String> {
    let start = html.find("id=\"new-key-secret\"")?;
    let code = start + html[start..].find("<code>")? + "<code>".len();
    let end = code + html[code..].find("</code>")?;
    Some(html[code..end].to_owned())
}

/// The id of the key whose secret `html` shows.
fn new_key_id(html: &str) -> String {
    let marker = "id=\"new-key-secret\" class=\"secret\" data-key-id=\"";
    let start = html.find(marker).expect("a new key") + marker.len();
    let end = start + html[start..].find('"').expect("end of id");
    html[start..end].to_owned()
}

#[tokio::test]
async fn a_key_created_on_the_console_works_over_the_api_and_its_secret_is_shown_once() {
    created_key_works_and_its_secret_is_shown_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_key_created_on_the_console_works_over_the_api_on_postgres() {
    created_key_works_and_its_secret_is_shown_once(Backend::Postgres).await;
}

async fn created_key_works_and_its_secret_is_shown_once(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let console = app.console(&admin.secret).await;

    let list = console.get("/console/keys").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let html = list.text();
    assert!(html.contains("id=\"create-key\""), "{html}");
    assert!(html.contains(&admin.info.id), "the admin key is listed");
    assert!(!html.contains(&admin.secret), "no secret on the list");
    assert!(
        !html.contains("value=\"read_clear\""),
        "admin does not hold read_clear, so cannot hand it on"
    );

    let created = console
        .post(
            "/console/keys",
            &[
                ("label", "ci <deploy>"),
                ("scopes", "read"),
                ("scopes", "write"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(created.headers["cache-control"], "no-store");
    let html = created.text();
    let secret = shown_secret(&html).expect("the secret, shown once");
    assert!(html.contains("will not be shown again"), "{html}");
    assert!(
        html.contains("ci &#60;deploy&#62;") || html.contains("ci &lt;deploy&gt;"),
        "the label is listed, escaped: {html}"
    );
    assert!(!html.contains("<deploy>"));
    let id = new_key_id(&html);

    let over_api = app.get("/api/v1/tenant", Some(&secret)).await;
    assert_eq!(over_api.status, StatusCode::OK, "{}", over_api.text());
    assert_eq!(over_api.json()["key_id"], id.as_str());
    assert_eq!(
        over_api.json()["scopes"],
        serde_json::json!(["read", "write"])
    );

    let again = console.get("/console/keys").await.text();
    assert!(again.contains(&id), "the new key is listed");
    assert!(!again.contains(&secret), "and its secret is not");
    assert!(shown_secret(&again).is_none());
    app.cleanup().await;
}

#[tokio::test]
async fn creating_a_key_checks_its_fields_and_the_scopes_the_creator_holds() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let console = app.console(&admin.secret).await;

    let no_scope = console.post("/console/keys", &[("label", "x")]).await;
    assert_eq!(no_scope.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(no_scope.text().contains("id=\"key-scopes-error\""));
    assert!(shown_secret(&no_scope.text()).is_none());

    let bad_label = console
        .post("/console/keys", &[("label", "a\u{7}b"), ("scopes", "read")])
        .await;
    assert_eq!(
        bad_label.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bad_label.text()
    );
    assert!(
        bad_label.text().contains("id=\"key-label-error\""),
        "{}",
        bad_label.text()
    );
    assert!(bad_label.text().contains("aria-invalid=\"true\""));

    let unknown = console.post("/console/keys", &[("scopes", "root")]).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Admin does not imply read_clear: minting a read_clear key is refused, here and over the API.
    let escalation = console
        .post("/console/keys", &[("scopes", "read_clear")])
        .await;
    assert_eq!(
        escalation.status,
        StatusCode::FORBIDDEN,
        "{}",
        escalation.text()
    );
    let over_api = app
        .call(
            axum::http::Method::POST,
            "/api/v1/tenant/keys",
            Some(&admin.secret),
            Some(serde_json::json!({"scopes": ["read_clear"]})),
        )
        .await;
    assert_eq!(
        over_api.status,
        StatusCode::FORBIDDEN,
        "{}",
        over_api.text()
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_the_api_and_the_last_admin_key_stays() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let console = app.console(&admin.secret).await;
    let created = console.post("/console/keys", &[("scopes", "read")]).await;
    let secret = shown_secret(&created.text()).expect("secret");
    let id = new_key_id(&created.text());
    assert_eq!(
        app.get("/api/v1/tenant", Some(&secret)).await.status,
        StatusCode::OK
    );

    let list = console.get("/console/keys").await.text();
    assert!(list.contains(&format!(
        "class=\"revoke-key inline-form\" data-key-id=\"{id}\""
    )));
    assert!(list.contains("data-confirm="));

    let revoked = console
        .post(&format!("/console/keys/{id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.text());
    assert_eq!(
        app.get("/api/v1/tenant", Some(&secret)).await.status,
        StatusCode::UNAUTHORIZED,
        "revocation takes effect at once"
    );
    let list = console.get("/console/keys").await.text();
    assert!(
        !list.contains(&format!("data-key-id=\"{id}\"")),
        "no revoke form for a revoked key"
    );
    assert!(list.contains("revoked"));

    let last = console
        .post(&format!("/console/keys/{}/revoke", admin.info.id), &[])
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{}", last.text());
    assert!(
        last.text().contains("last active admin key"),
        "{}",
        last.text()
    );
    assert_eq!(
        console.get("/console/keys").await.status,
        StatusCode::OK,
        "still signed in"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn revoking_the_key_you_signed_in_with_ends_the_session() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, first) = app.tenant("acme", &[Scope::Admin]).await;
    let console = app.console(&first.secret).await;
    let created = console.post("/console/keys", &[("scopes", "admin")]).await;
    let second = shown_secret(&created.text()).expect("secret");

    let list = console.get("/console/keys").await.text();
    assert!(
        list.contains("Revoking it ends this session"),
        "the confirmation warns"
    );
    let revoked = console
        .post(&format!("/console/keys/{}/revoke", first.info.id), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert!(
        revoked.text().contains("session has ended"),
        "{}",
        revoked.text()
    );
    assert!(revoked.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let after = console.get("/console/keys").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "signed out");
    assert_eq!(
        app.get("/api/v1/tenant", Some(&first.secret)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/tenant", Some(&second)).await.status,
        StatusCode::OK
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_read_only_key_sees_no_key_forms_and_is_refused_when_it_posts() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let reader = app
        .fixture
        .store
        .issue_api_key(
            &tenant.id,
            [Scope::Read, Scope::Write].into_iter().collect(),
            None,
        )
        .await
        .unwrap();
    let console = app.console(&reader.secret).await;

    let overview = console.get("/console").await.text();
    assert!(
        !overview.contains("href=\"/console/keys\""),
        "no keys entry in the navigation"
    );
    let page = console.get("/console/keys").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!page.text().contains("create-key"));
    assert!(
        !page.text().contains("method=\"post\""),
        "no form at all on the refusal"
    );

    let create = console.post("/console/keys", &[("scopes", "read")]).await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    let revoke = console
        .post(&format!("/console/keys/{}/revoke", admin.info.id), &[])
        .await;
    assert_eq!(revoke.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/v1/tenant", Some(&admin.secret)).await.status,
        StatusCode::OK
    );
    app.cleanup().await;
}

#[tokio::test]
async fn another_tenants_keys_are_neither_listed_nor_revocable() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, a) = app.tenant("tenant-a", &[Scope::Admin]).await;
    let a_other = app
        .fixture
        .store
        .issue_api_key(
            &a.info.tenant_id,
            [Scope::Read].into_iter().collect(),
            Some("a-only"),
        )
        .await
        .unwrap();
    let (_, b) = app.tenant("tenant-b", &[Scope::Admin]).await;
    let console_b = app.console(&b.secret).await;

    let list = console_b.get("/console/keys").await.text();
    assert!(!list.contains(&a.info.id) && !list.contains(&a_other.info.id));
    assert!(!list.contains("a-only"));
    let revoke = console_b
        .post(&format!("/console/keys/{}/revoke", a_other.info.id), &[])
        .await;
    assert_eq!(revoke.status, StatusCode::NOT_FOUND, "{}", revoke.text());
    assert_eq!(
        app.get("/api/v1/tenant", Some(&a_other.secret))
            .await
            .status,
        StatusCode::OK
    );
    app.cleanup().await;
}
