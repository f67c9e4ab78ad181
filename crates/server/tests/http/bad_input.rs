//! Bad input of every kind gets problem+json with the right status and a detail naming what is
//! wrong; nothing panics, and nothing accepted before is lost or changed.

use axum::body::Body;
use axum::http::{Method, Request};
use server::ServerConfig;
use store::{Backend, Scope};

use crate::TestApp;

const KEYS: &str = "/api/v1/tenant/keys";

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    auth: Auth,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    /// Text the detail (or the named field) must contain.
    mentions: &'static str,
}

enum Auth {
    None,
    Admin,
    Reader,
    Raw(&'static str),
}

fn post(
    name: &'static str,
    body: &str,
    status: u16,
    code: &'static str,
    mentions: &'static str,
) -> Case {
    Case {
        name,
        method: Method::POST,
        path: KEYS,
        auth: Auth::Admin,
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        code,
        mentions,
    }
}

fn get(
    name: &'static str,
    path: &'static str,
    auth: Auth,
    status: u16,
    code: &'static str,
    mentions: &'static str,
) -> Case {
    Case {
        name,
        method: Method::GET,
        path,
        auth,
        content_type: None,
        body: Vec::new(),
        status,
        code,
        mentions,
    }
}

fn cases() -> Vec<Case> {
    vec![
        post("truncated json", "{", 400, "malformed_json", "EOF"),
        post("not json", "scopes=read", 400, "malformed_json", "line 1"),
        post(
            "trailing garbage",
            r#"{"scopes":["read"]} {}"#,
            400,
            "malformed_json",
            "trailing",
        ),
        post(
            "deep nesting",
            &"[".repeat(3_000),
            400,
            "malformed_json",
            "recursion",
        ),
        post(
            "wrong type",
            r#"{"scopes":"read"}"#,
            400,
            "invalid_field",
            "scopes",
        ),
        post(
            "number for enum",
            r#"{"scopes":[3]}"#,
            400,
            "invalid_field",
            "scopes[0]",
        ),
        post(
            "unknown scope",
            r#"{"scopes":["root"]}"#,
            400,
            "invalid_field",
            "scopes[0]",
        ),
        post(
            "missing field",
            r#"{"label":"x"}"#,
            400,
            "invalid_field",
            "scopes",
        ),
        post(
            "unknown field",
            r#"{"scopes":["read"],"scope":"x"}"#,
            400,
            "invalid_field",
            "scope",
        ),
        post(
            "label wrong type",
            r#"{"scopes":["read"],"label":7}"#,
            400,
            "invalid_field",
            "label",
        ),
        post(
            "empty scopes",
            r#"{"scopes":[]}"#,
            400,
            "invalid_field",
            "scopes",
        ),
        post(
            "label too long",
            &format!(r#"{{"scopes":["read"],"label":"{}"}}"#, "x".repeat(101)),
            400,
            "invalid_field",
            "label",
        ),
        post(
            "label control chars",
            r#"{"scopes":["read"],"label":"a\u0000b"}"#,
            400,
            "invalid_field",
            "label",
        ),
        post(
            "top-level array",
            r#"[1,2]"#,
            400,
            "invalid_field",
            "JSON object",
        ),
        post(
            "oversized body",
            &format!(r#"{{"scopes":["read"],"label":"{}"}}"#, "x".repeat(5_000)),
            413,
            "payload_too_large",
            "larger",
        ),
        Case {
            content_type: Some("text/plain"),
            ..post(
                "wrong content type",
                r#"{"scopes":["read"]}"#,
                415,
                "unsupported_media_type",
                "application/json",
            )
        },
        Case {
            content_type: None,
            ..post(
                "no content type",
                r#"{"scopes":["read"]}"#,
                415,
                "unsupported_media_type",
                "application/json",
            )
        },
        Case {
            body: vec![0xff, 0xfe, 0x00],
            ..post("not utf-8", "", 400, "malformed_json", "line 1")
        },
        get(
            "no key",
            "/api/v1/tenant",
            Auth::None,
            401,
            "unauthorized",
            "Authorization",
        ),
        get(
            "unknown key",
            "/api/v1/tenant",
            Auth::Raw("Bearer sbx_000000000000000000000000000000000000000000000000"),
            401,
            "unauthorized",
            "not valid",
        ),
        get(
            "malformed key",
            "/api/v1/tenant",
            Auth::Raw("Bearer hello"),
            401,
            "unauthorized",
            "not valid",
        ),
        get(
            "wrong scheme",
            "/api/v1/tenant",
            Auth::Raw("Basic dXNlcjpwYXNz"),
            401,
            "unauthorized",
            "Bearer",
        ),
        get(
            "empty bearer",
            "/api/v1/tenant",
            Auth::Raw("Bearer "),
            401,
            "unauthorized",
            "not valid",
        ),
        get(
            "read key on admin route",
            KEYS,
            Auth::Reader,
            403,
            "forbidden",
            "admin",
        ),
        get(
            "unknown key id",
            "/api/v1/tenant/keys/key_nope",
            Auth::Admin,
            404,
            "not_found",
            "key_nope",
        ),
        get(
            "unknown route",
            "/api/v1/nope",
            Auth::Admin,
            404,
            "route_not_found",
            "/api/v1/nope",
        ),
        get(
            "unknown route, no key",
            "/wp-admin.php",
            Auth::None,
            404,
            "route_not_found",
            "/wp-admin.php",
        ),
        Case {
            method: Method::PUT,
            ..get(
                "wrong method",
                "/api/v1/tenant",
                Auth::Admin,
                405,
                "method_not_allowed",
                "PUT",
            )
        },
        Case {
            method: Method::PATCH,
            ..get(
                "wrong method on keys",
                KEYS,
                Auth::Admin,
                405,
                "method_not_allowed",
                "PATCH",
            )
        },
    ]
}

#[tokio::test]
async fn every_bad_request_gets_a_problem_and_changes_nothing() {
    let config = ServerConfig {
        body_limit_bytes: 4096,
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let (tenant, admin) = app.tenant("t", &[Scope::Admin]).await;
    let (_, reader) = app.tenant("r", &[Scope::Read]).await;
    let before = app.fixture.store.list_api_keys(&tenant.id).await.unwrap();

    for case in cases() {
        let mut req = Request::builder()
            .method(case.method.clone())
            .uri(case.path);
        let auth = match case.auth {
            Auth::None => None,
            Auth::Admin => Some(format!("Bearer {}", admin.secret)),
            Auth::Reader => Some(format!("Bearer {}", reader.secret)),
            Auth::Raw(v) => Some(v.to_owned()),
        };
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        let reply = app.send(req.body(Body::from(case.body)).unwrap()).await;
        let body = reply.assert_problem(case.status, case.code, case.path);
        let said = format!("{} {}", body["detail"], body["field"]);
        assert!(
            said.contains(case.mentions),
            "{}: expected the problem to mention {:?}: {body}",
            case.name,
            case.mentions
        );
    }

    // A body with no Content-Length that grows past the limit is refused too.
    app.send(post_keys_streaming(&admin.secret, Some(6)))
        .await
        .assert_problem(413, "payload_too_large", KEYS);

    // Nothing was created or changed by any of it, and good requests still work.
    assert_eq!(
        app.fixture.store.list_api_keys(&tenant.id).await.unwrap(),
        before
    );
    let ok = app
        .call(
            Method::POST,
            KEYS,
            Some(&admin.secret),
            Some(serde_json::json!({"scopes": ["read"]})),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    app.cleanup().await;
}

/// POST /api/v1/tenant/keys with a JSON content type and a streamed body (see `streamed_body`).
fn post_keys_streaming(key: &str, chunks: Option<usize>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(KEYS)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(streamed_body(chunks))
        .unwrap()
}

/// A streamed body with no Content-Length: `chunks` chunks of 1000 spaces, or, with `None`, a
/// body that never finishes.
fn streamed_body(chunks: Option<usize>) -> Body {
    struct Chunks(Option<usize>);
    impl futures_core::Stream for Chunks {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            use std::task::Poll;
            match self.0 {
                None => Poll::Pending,
                Some(0) => Poll::Ready(None),
                Some(n) => {
                    self.0 = Some(n - 1);
                    Poll::Ready(Some(Ok(bytes::Bytes::from(vec![b' '; 1000]))))
                }
            }
        }
    }
    Body::from_stream(Chunks(chunks))
}

#[tokio::test]
async fn a_request_over_the_time_limit_gets_503() {
    let config = ServerConfig {
        request_timeout: std::time::Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let app = TestApp::with_config(Backend::Sqlite, config).await;
    let (_, admin) = app.tenant("t", &[Scope::Admin]).await;
    // A body that never finishes keeps the handler waiting past any limit.
    let reply = app.send(post_keys_streaming(&admin.secret, None)).await;
    let body = reply.assert_problem(503, "timeout", KEYS);
    assert!(body["detail"].as_str().unwrap().contains("50 ms"), "{body}");
    assert_eq!(reply.headers["retry-after"], "1");
    app.cleanup().await;
}
