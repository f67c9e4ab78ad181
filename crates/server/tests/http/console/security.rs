//! The console's security properties beyond signing in and out: session expiry (idle and
//! maximum lifetime, aged through the store rather than by waiting), revocation, cross-site
//! sign-in, open redirects, the `Secure` cookie, tenant isolation, no secret on any page,
//! security headers, asset caching, and refusing bodies that are not forms.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use server::{ConsoleSettings, ServerConfig};
use store::{Backend, Scope};

use super::form;
use crate::{Reply, TestApp};

const MINUTE_MS: i64 = 60_000;

fn with_console(console: ConsoleSettings) -> ServerConfig {
    ServerConfig {
        console,
        ..ServerConfig::default()
    }
}

fn is_sign_in_redirect(reply: &Reply) -> bool {
    reply.status == StatusCode::SEE_OTHER
        && reply
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|l| l.starts_with("/console/sign-in"))
}

fn location(reply: &Reply) -> &str {
    reply
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `POST /console/sign-in` with extra headers, as a browser on some site would send it.
async fn sign_in_with(app: &TestApp, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::post("/console/sign-in")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "console.test");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    app.send(req.body(Body::from(form(fields))).unwrap()).await
}

#[tokio::test]
async fn an_idle_session_ends_and_a_used_one_does_not() {
    let app = TestApp::with_config(
        Backend::Sqlite,
        with_console(ConsoleSettings {
            idle_timeout: Duration::from_secs(30 * 60),
            ..ConsoleSettings::default()
        }),
    )
    .await;
    let (tenant, key) = app.tenant("acme", &[Scope::Read]).await;
    let console = app.console(&key.secret).await;
    let store = &app.fixture.store;

    // Used 29 minutes ago: still live.
    store
        .backdate_console_sessions(&tenant.id, 29 * MINUTE_MS, 29 * MINUTE_MS)
        .await
        .unwrap();
    assert_eq!(console.get("/console").await.status, StatusCode::OK);
    // That request marked it used; 31 idle minutes later it is gone, for good.
    store
        .backdate_console_sessions(&tenant.id, 31 * MINUTE_MS, 31 * MINUTE_MS)
        .await
        .unwrap();
    let expired = console.get("/console").await;
    assert!(is_sign_in_redirect(&expired), "{expired:?}");
    assert_eq!(
        store
            .backdate_console_sessions(&tenant.id, 0, 0)
            .await
            .unwrap(),
        0,
        "the expired session was deleted, not just refused"
    );
    // A form post with the expired cookie does nothing either.
    let post = console.post("/console/sign-out", &[]).await;
    assert!(is_sign_in_redirect(&post), "{post:?}");
    app.cleanup().await;
}

#[tokio::test]
async fn a_busy_session_ends_at_its_maximum_lifetime() {
    let app = TestApp::with_config(
        Backend::Sqlite,
        with_console(ConsoleSettings {
            max_lifetime: Duration::from_secs(8 * 60 * 60),
            ..ConsoleSettings::default()
        }),
    )
    .await;
    let (tenant, key) = app.tenant("acme", &[Scope::Read]).await;
    let console = app.console(&key.secret).await;
    let store = &app.fixture.store;

    // Made 7 hours ago, used a minute ago: live.
    store
        .backdate_console_sessions(&tenant.id, 7 * 60 * MINUTE_MS, MINUTE_MS)
        .await
        .unwrap();
    assert_eq!(console.get("/console").await.status, StatusCode::OK);
    // Made over 8 hours ago, used just now: ended however busy.
    store
        .backdate_console_sessions(&tenant.id, 61 * MINUTE_MS, 0)
        .await
        .unwrap();
    let expired = console.get("/console").await;
    assert!(is_sign_in_redirect(&expired), "{expired:?}");
    // The cookie's Max-Age matches the lifetime, so the browser drops it too.
    let cookie = app.sign_in(&key.secret).await.headers["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Max-Age=28800"), "{cookie}");
    app.cleanup().await;
}

#[tokio::test]
async fn revoking_the_key_ends_its_sessions_at_once() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (tenant, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = app
        .fixture
        .store
        .issue_api_key(&tenant.id, [Scope::Read].into_iter().collect(), None)
        .await
        .unwrap();
    let console = app.console(&key.secret).await;
    let htmx = console.get_htmx("/console").await;
    assert_eq!(htmx.status, StatusCode::OK);

    // Revoked through the API, as an admin does.
    let revoked = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenant/keys/{}", key.info.id),
            Some(&admin.secret),
            None,
        )
        .await;
    assert!(revoked.status.is_success(), "{}", revoked.text());
    let page = console.get("/console").await;
    assert!(is_sign_in_redirect(&page), "{page:?}");
    // htmx is told to navigate to the sign-in page rather than swap it into a fragment.
    let fragment = console.get_htmx("/console").await;
    assert!(fragment.headers.contains_key("hx-redirect"), "{fragment:?}");
    let post = console.post("/console/sign-out", &[]).await;
    assert!(is_sign_in_redirect(&post), "{post:?}");
    // The revoked key cannot sign in again.
    assert_eq!(
        app.sign_in(&key.secret).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_sign_in_from_another_site_is_refused() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Admin]).await;
    let fields = [("api_key", key.secret.as_str()), ("next", "/console")];

    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://evil.example"),
        ][..],
    ] {
        let reply = sign_in_with(&app, &fields, headers).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(
            reply.headers.get("set-cookie").is_none(),
            "no session from {headers:?}"
        );
        assert!(reply.content_type().starts_with("text/html"), "{headers:?}");
    }
    // The console's own page posting to itself signs in.
    let own = sign_in_with(
        &app,
        &fields,
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://console.test"),
        ],
    )
    .await;
    assert_eq!(own.status, StatusCode::SEE_OTHER, "{}", own.text());
    assert!(own.headers.contains_key("set-cookie"));
    app.cleanup().await;
}

#[tokio::test]
async fn next_never_leads_off_the_console() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Read]).await;
    let hostile = [
        "//evil.example",
        "//evil.example/console",
        "https://evil.example/console",
        "/\\evil.example",
        "/console//evil.example",
        "/console/\\evil.example",
        "javascript:alert(1)",
        "/api/v1/tenant",
        "/console/%0d%0aLocation: https://evil.example",
        "/console/\r\nLocation: https://evil.example",
    ];
    for next in hostile {
        let reply = sign_in_with(&app, &[("api_key", &key.secret), ("next", next)], &[]).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(location(&reply), "/console", "sign-in with next={next:?}");
    }
    // Signed in already, the sign-in page sends the browser on, never off the console.
    let console = app.console(&key.secret).await;
    for next in hostile {
        let path = format!(
            "/console/sign-in?next={}",
            form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
        let reply = console.get(&path).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(location(&reply), "/console", "{path}");
    }
    // A page of the console is a fine place to come back to.
    let reply = sign_in_with(
        &app,
        &[("api_key", &key.secret), ("next", "/console?x=1")],
        &[],
    )
    .await;
    assert_eq!(location(&reply), "/console?x=1");
    app.cleanup().await;
}

#[tokio::test]
async fn the_cookie_is_secure_when_configured_and_only_then() {
    let secure = TestApp::with_config(
        Backend::Sqlite,
        with_console(ConsoleSettings {
            secure_cookie: true,
            ..ConsoleSettings::default()
        }),
    )
    .await;
    let (_, key) = secure.tenant("acme", &[Scope::Read]).await;
    let signed_in = secure.sign_in(&key.secret).await;
    let cookie = signed_in.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let console = secure.console(&key.secret).await;
    let out = console.post("/console/sign-out", &[]).await;
    let cleared = out.headers["set-cookie"].to_str().unwrap();
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("; Secure"),
        "{cleared}"
    );
    secure.cleanup().await;

    let plain = TestApp::new(Backend::Sqlite).await;
    let (_, key) = plain.tenant("acme", &[Scope::Read]).await;
    let cookie = plain.sign_in(&key.secret).await.headers["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!cookie.contains("Secure"), "{cookie}");
    plain.cleanup().await;
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_console() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (acme, acme_key) = app.tenant("acme-anvils", &[Scope::Admin]).await;
    let (globex, globex_key) = app.tenant("globex-gadgets", &[Scope::Admin]).await;
    let acme_console = app.console(&acme_key.secret).await;
    let globex_console = app.console(&globex_key.secret).await;

    let acme_page = acme_console.get("/console").await.text();
    assert!(acme_page.contains("acme-anvils"), "{acme_page}");
    assert!(!acme_page.contains("globex-gadgets"), "{acme_page}");
    assert!(!acme_page.contains(&globex.id), "{acme_page}");
    let globex_page = globex_console.get("/console").await.text();
    assert!(globex_page.contains("globex-gadgets"), "{globex_page}");
    assert!(!globex_page.contains("acme-anvils"), "{globex_page}");
    assert!(!globex_page.contains(&acme.id), "{globex_page}");

    // One tenant's CSRF token does not carry another's session.
    let crossed = acme_console
        .post_raw(
            "/console/sign-out",
            &form(&[("csrf", &globex_console.csrf)]),
            false,
        )
        .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    assert_eq!(acme_console.get("/console").await.status, StatusCode::OK);
    app.cleanup().await;
}

/// Every `href="/console…"` of a page (assets included), without the fragment.
fn console_links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|href| href.starts_with("/console"))
        .map(|href| href.split('#').next().unwrap_or(href).replace("&amp;", "&"))
        .collect()
}

#[tokio::test]
async fn no_page_reachable_from_the_overview_shows_a_secret() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, acme_admin) = app.tenant("acme", &[Scope::Admin]).await;
    let acme_read = app
        .fixture
        .store
        .issue_api_key(
            &acme_admin.info.tenant_id,
            [Scope::Read].into_iter().collect(),
            Some("dashboard"),
        )
        .await
        .unwrap();
    let (_, globex_admin) = app.tenant("globex", &[Scope::Admin]).await;
    let secrets = [&acme_admin.secret, &acme_read.secret, &globex_admin.secret];

    for key in [&acme_admin.secret, &acme_read.secret] {
        let console = app.console(key).await;
        let session = console
            .cookie
            .split_once('=')
            .map(|(_, v)| v.to_owned())
            .unwrap();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from(["/console".to_owned()]);
        while let Some(path) = queue.pop_front() {
            if !seen.insert(path.clone()) || seen.len() > 200 {
                continue;
            }
            let reply = console.get(&path).await;
            assert!(
                reply.status.is_success() || reply.status.is_redirection(),
                "{path}: {}",
                reply.status
            );
            let body = reply.text();
            for secret in secrets {
                assert!(!body.contains(secret.as_str()), "{path} shows a key secret");
            }
            assert!(!body.contains(&session), "{path} shows the session cookie");
            for (name, value) in &reply.headers {
                let value = value.to_str().unwrap_or("");
                assert!(
                    !secrets.iter().any(|s| value.contains(s.as_str())),
                    "{path}: header {name} holds a key secret"
                );
            }
            if reply.content_type().starts_with("text/html") {
                queue.extend(console_links(&body));
            }
        }
        // The overview and whatever its navigation links to (each page that lands is crawled).
        assert!(seen.contains("/console"), "{seen:?}");
    }
    app.cleanup().await;
}

fn assert_security_headers(what: &str, reply: &Reply) {
    let csp = reply
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    for directive in [
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp} lacks {directive}"
        );
    }
    assert_eq!(
        reply
            .headers
            .get("x-content-type-options")
            .map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{what}"
    );
    assert_eq!(
        reply.headers.get("x-frame-options").map(|v| v.as_bytes()),
        Some(&b"DENY"[..]),
        "{what}"
    );
    assert!(reply.headers.contains_key("referrer-policy"), "{what}");
}

#[tokio::test]
async fn pages_and_error_pages_carry_the_security_headers() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Admin]).await;
    let console = app.console(&key.secret).await;

    let overview = console.get("/console").await;
    assert_security_headers("overview", &overview);
    assert_eq!(overview.headers["cache-control"], "no-store");
    assert_security_headers("sign-in page", &app.get("/console/sign-in", None).await);
    let missing = console.get("/console/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.content_type().starts_with("text/html"));
    assert!(
        missing.text().contains("role=\"alert\""),
        "{}",
        missing.text()
    );
    assert_security_headers("404 page", &missing);
    let refused = console
        .post_raw("/console/sign-out", "csrf=00", false)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_security_headers("403 page", &refused);
    let bad_key = app.sign_in("sb_not_a_key").await;
    assert_eq!(bad_key.status, StatusCode::UNAUTHORIZED);
    assert_security_headers("401 sign-in page", &bad_key);
    let signed_out = app.get("/console", None).await;
    assert!(is_sign_in_redirect(&signed_out));
    assert_security_headers("sign-in redirect", &signed_out);
    app.cleanup().await;
}

/// The asset links of a page: `/console/assets/…`.
fn asset_links(html: &str) -> Vec<String> {
    html.split(['"', '\''])
        .filter(|s| s.starts_with("/console/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn assets_are_immutable_under_hashed_names_only() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Read]).await;
    let console = app.console(&key.secret).await;
    let page = console.get("/console").await.text();
    let assets = asset_links(&page);
    assert_eq!(
        assets.len(),
        3,
        "style, htmx and the console script: {assets:?}"
    );
    for asset in &assets {
        // Assets are public: no session needed.
        let reply = app.get(asset, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{asset}");
        let cache = reply.headers["cache-control"].to_str().unwrap();
        assert!(
            cache.contains("immutable") && cache.contains("max-age=31536000"),
            "{asset}: {cache}"
        );
        assert_security_headers(asset, &reply);
        let expected = if asset.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(reply.content_type().starts_with(expected), "{asset}");
        // The same file under its plain name, or a hash that is not its own, does not exist.
        let file = asset.rsplit('/').next().unwrap();
        let mut parts: Vec<&str> = file.split('.').collect();
        let extension = parts.pop().unwrap();
        let hash = parts.pop().unwrap();
        assert_eq!(hash.len(), 12, "{file}");
        let stem = parts.join(".");
        for other in [
            format!("/console/assets/{stem}.{extension}"),
            format!("/console/assets/{stem}.000000000000.{extension}"),
        ] {
            let reply = app.get(&other, None).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{other}");
            assert!(!reply.headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable"));
        }
    }
    for unknown in [
        "/console/assets/evil.js",
        "/console/assets/..%2f..%2fCargo.toml",
        "/console/assets/",
    ] {
        let reply = app.get(unknown, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{unknown}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn the_root_leads_to_the_console() {
    let app = TestApp::new(Backend::Sqlite).await;
    for method in [Method::GET, Method::HEAD] {
        for path in ["/", "/console/"] {
            let reply = app
                .send(
                    Request::builder()
                        .method(method.clone())
                        .uri(path)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert!(reply.status.is_redirection(), "{method} {path}");
            assert_eq!(location(&reply), "/console", "{method} {path}");
        }
    }
    app.cleanup().await;
}

#[tokio::test]
async fn posts_that_are_not_forms_are_refused_with_a_page() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Admin]).await;
    let console = app.console(&key.secret).await;
    let limit = ServerConfig::default().body_limit_bytes;

    let send = |path: &str, content_type: &str, body: Vec<u8>| {
        Request::post(path)
            .header("cookie", &console.cookie)
            .header("x-csrf-token", &console.csrf)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap()
    };
    // A JSON body to a form endpoint: 422, and it did nothing (still signed in).
    let json = app
        .send(send(
            "/console/sign-out",
            "application/json",
            br#"{"csrf":"x"}"#.to_vec(),
        ))
        .await;
    assert_eq!(
        json.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        json.text()
    );
    assert!(json.content_type().starts_with("text/html"));
    assert!(
        json.text().contains("x-www-form-urlencoded"),
        "{}",
        json.text()
    );
    assert_eq!(console.get("/console").await.status, StatusCode::OK);
    let json_sign_in = app
        .send(
            Request::post("/console/sign-in")
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({"api_key": key.secret}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(json_sign_in.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(json_sign_in.headers.get("set-cookie").is_none());

    // A body over the limit: 413, as a page.
    let huge = vec![b'a'; limit + 1];
    for path in ["/console/sign-out", "/console/sign-in"] {
        let reply = app
            .send(send(
                path,
                "application/x-www-form-urlencoded",
                huge.clone(),
            ))
            .await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert!(reply.content_type().starts_with("text/html"), "{path}");
        assert_security_headers(path, &reply);
    }
    // A post to a page that only reads: refused, not a server error.
    let reply = app
        .send(send("/console", "application/json", b"{}".to_vec()))
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    let reply = app
        .send(send(
            "/console/no-such-page",
            "application/x-www-form-urlencoded",
            huge,
        ))
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.status);
    assert_eq!(console.get("/console").await.status, StatusCode::OK);
    app.cleanup().await;
}
