//! Signing in and out, and what a session may do.

use axum::http::StatusCode;
use store::{Backend, Scope};

use crate::TestApp;

#[tokio::test]
async fn a_key_signs_in_for_an_http_only_same_site_strict_cookie_and_signs_out() {
    signs_in_and_out(Backend::Sqlite).await;
}

#[tokio::test]
async fn sessions_work_on_postgres_too() {
    signs_in_and_out(Backend::Postgres).await;
}

async fn signs_in_and_out(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (_, key) = app.tenant("acme", &[Scope::Read]).await;

    let refused = app.sign_in("sb_not_a_real_key").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.text().contains("not valid"), "{}", refused.text());
    assert!(refused.headers.get("set-cookie").is_none());

    let signed_in = app.sign_in(&key.secret).await;
    let cookie = signed_in.headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(
        !cookie.contains(&key.secret),
        "the key must not be the cookie"
    );

    let console = app.console(&key.secret).await;
    let page = console.get("/console").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.text().contains("acme"));
    assert!(!page.text().contains(&key.secret), "no page shows the key");

    let out = console.post("/console/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let after = console.get("/console").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "the session is gone");
    assert!(after.headers["location"]
        .to_str()
        .unwrap()
        .starts_with("/console/sign-in"));
    app.cleanup().await;
}

#[tokio::test]
async fn a_form_without_the_session_token_or_from_another_site_is_refused() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Admin]).await;
    let console = app.console(&key.secret).await;

    let no_token = console.post_raw("/console/sign-out", "", false).await;
    assert_eq!(
        no_token.status,
        StatusCode::FORBIDDEN,
        "{}",
        no_token.text()
    );
    let wrong = console
        .post_raw("/console/sign-out", "csrf=00", false)
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let body = super::form(&[("csrf", &console.csrf)]);
    let cross = console.post_raw("/console/sign-out", &body, true).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(cross.text().contains("cross-site"), "{}", cross.text());
    // Still signed in: none of the refused posts signed out.
    assert_eq!(console.get("/console").await.status, StatusCode::OK);
    app.cleanup().await;
}
