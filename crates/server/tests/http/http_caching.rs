//! HTTP caching on every route: strong ETags from the body, 304 for `If-None-Match`,
//! `Cache-Control` per route class, `Vary`, and compression (gzip, br, zstd) from 500 bytes,
//! with each encoded representation under its own ETag.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use store::{Backend, Scope};

use crate::{Reply, TestApp};

/// `method path` with the key (if any), extra headers and a JSON body (if any).
async fn request(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    app.send(req.body(body).unwrap()).await
}

async fn get(app: &TestApp, path: &str, key: Option<&str>, headers: &[(&str, &str)]) -> Reply {
    request(app, Method::GET, path, key, headers, None).await
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

fn etag(reply: &Reply) -> String {
    header(reply, "etag")
        .unwrap_or_else(|| panic!("no ETag: {:?}", reply.headers))
        .to_owned()
}

/// The ETag the server promises for a body: the first 16 bytes of its SHA-256 in hex, quoted.
fn expected_etag(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..16]))
}

/// The tokens of `Vary`, lowercased.
fn vary(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("valid brotli");
        }
        "zstd" => out = zstd::stream::decode_all(bytes).expect("valid zstd"),
        other => panic!("no decoder for {other}"),
    }
    out
}

/// A flag whose admin answer is well over the compression threshold.
fn wordy_flag(key: &str) -> Value {
    json!({
        "key": key, "type": "boolean", "status": "active",
        "description": "A flag with a long description, so that its answer is compressed. ".repeat(12),
        "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "default_variant": "on", "off_variant": "off"
    })
}

#[tokio::test]
async fn a_tenant_get_carries_a_strong_etag_of_its_body() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Read]).await;
    let key = key.secret.as_str();

    let first = get(&app, "/api/v1/tenant", Some(key), &[]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(etag(&first), expected_etag(&first.body));
    let again = get(&app, "/api/v1/tenant", Some(key), &[]).await;
    assert_eq!(again.body, first.body);
    assert_eq!(etag(&again), etag(&first), "same body, same ETag");

    // HEAD answers with GET's validator and no body.
    let head = request(&app, Method::HEAD, "/api/v1/tenant", Some(key), &[], None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(etag(&head), etag(&first));
    app.cleanup().await;
}

#[tokio::test]
async fn the_etag_changes_when_the_answer_does() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = admin.secret.as_str();

    let before = get(&app, "/api/v1/tenant/keys", Some(key), &[]).await;
    assert_eq!(before.status, 200, "{}", before.text());
    let created = request(
        &app,
        Method::POST,
        "/api/v1/tenant/keys",
        Some(key),
        &[],
        Some(json!({"scopes": ["read"], "label": "dashboard"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let after = get(&app, "/api/v1/tenant/keys", Some(key), &[]).await;
    assert_ne!(after.body, before.body);
    assert_ne!(etag(&after), etag(&before));
    assert_eq!(etag(&after), expected_etag(&after.body));

    // The old validator no longer matches: the new answer comes in full.
    let old = etag(&before);
    let stale = get(
        &app,
        "/api/v1/tenant/keys",
        Some(key),
        &[("if-none-match", &old)],
    )
    .await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, after.body);
    app.cleanup().await;
}

#[tokio::test]
async fn if_none_match_naming_the_answer_gets_304() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Read]).await;
    let key = key.secret.as_str();
    let full = get(&app, "/api/v1/tenant", Some(key), &[]).await;
    let tag = etag(&full);
    let opaque = tag.trim_matches('"');

    let weak = format!("W/{tag}");
    let listed = format!("\"nope\", {weak}");
    let split_lines = [("if-none-match", "\"nope\""), ("if-none-match", &tag)];
    let matching: [&[(&str, &str)]; 5] = [
        &[("if-none-match", &tag)],
        &[("if-none-match", "*")],
        &[("if-none-match", &weak)],
        &[("if-none-match", &listed)],
        &split_lines,
    ];
    for headers in matching {
        let reply = get(&app, "/api/v1/tenant", Some(key), headers).await;
        assert_eq!(reply.status, 304, "{headers:?}: {}", reply.text());
        assert!(reply.body.is_empty(), "{headers:?}");
        assert_eq!(etag(&reply), tag, "{headers:?}");
        assert_eq!(header(&reply, "cache-control"), Some("private, no-cache"));
        assert_eq!(vary(&reply), ["authorization", "accept-encoding"]);
        // Representation metadata stays off a 304, and no `Content-Length: 0` is claimed.
        assert_eq!(header(&reply, "content-type"), None);
        assert_eq!(header(&reply, "content-length"), None);
        assert!(header(&reply, "x-request-id").is_some());
    }

    // The tag with its last character changed (to one it is not: a fixed `0` matched the
    // tags that end in `0`, one in sixteen).
    let last = if opaque.ends_with('0') { '1' } else { '0' };
    let near_miss = format!("\"{}{last}\"", &opaque[..opaque.len() - 1]);
    let missing: [&[(&str, &str)]; 4] = [
        &[("if-none-match", "\"something-else\"")],
        &[("if-none-match", &near_miss)],
        &[("if-none-match", opaque)], // unquoted: malformed, so ignored
        &[],
    ];
    for headers in missing {
        let reply = get(&app, "/api/v1/tenant", Some(key), headers).await;
        assert_eq!(reply.status, 200, "{headers:?}");
        assert_eq!(reply.body, full.body, "{headers:?}");
        assert_eq!(etag(&reply), tag);
    }
    app.cleanup().await;
}

#[tokio::test]
async fn cache_control_follows_the_route_class() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Read]).await;
    let key = Some(key.secret.as_str());
    let public = &["accept-encoding"][..];
    let tenant = &["authorization", "accept-encoding"][..];
    let cases = [
        ("/health", None, "no-store", public),
        ("/api/v1/health", None, "no-store", public),
        ("/ready", None, "no-store", public),
        // The scrape's format follows Accept, and a scrape token may be required.
        (
            "/metrics",
            None,
            "no-store",
            &["accept-encoding", "accept", "authorization"][..],
        ),
        ("/openapi.json", None, "public, max-age=300", public),
        (
            "/forecast?station=JFK&horizon=24h",
            key,
            "private, max-age=60",
            tenant,
        ),
        (
            "/api/v1/forecast?station=JFK&horizon=24h",
            key,
            "private, max-age=60",
            tenant,
        ),
        (
            "/api/v1/forecast/catalogue",
            key,
            "private, max-age=60",
            tenant,
        ),
        ("/api/v1/tenant", key, "private, no-cache", tenant),
        ("/ofrep/v1/configuration", key, "private, no-cache", tenant),
        (
            "/api/v1/flags",
            key,
            "private, no-cache",
            &["authorization", "accept-encoding", "x-environment"][..],
        ),
    ];
    for (path, key, cache_control, varies) in cases {
        let reply = get(&app, path, key, &[]).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(
            header(&reply, "cache-control"),
            Some(cache_control),
            "{path}"
        );
        assert_eq!(vary(&reply), varies, "{path}");
        // Every 200 GET here has a validator, from the handler or the body.
        assert!(header(&reply, "etag").is_some(), "{path}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn writes_get_no_etag_and_are_not_stored() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let created = request(
        &app,
        Method::POST,
        "/api/v1/tenant/keys",
        Some(&admin.secret),
        &[("if-none-match", "*")],
        Some(json!({"scopes": ["read"]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(header(&created, "etag"), None);
    assert_eq!(header(&created, "cache-control"), Some("no-store"));
    app.cleanup().await;
}

#[tokio::test]
async fn errors_are_problems_never_cached_nor_compressed() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("shop", &[Scope::Read, Scope::Write]).await;
    let all_encodings = ("accept-encoding", "gzip, br, zstd");

    let unauthorised = get(
        &app,
        "/api/v1/tenant",
        None,
        &[("if-none-match", "*"), all_encodings],
    )
    .await;
    unauthorised.assert_problem(401, "unauthorized", "/api/v1/tenant");
    assert_eq!(header(&unauthorised, "cache-control"), Some("no-store"));
    assert_eq!(header(&unauthorised, "etag"), None);

    let unrouted = get(&app, "/api/v1/nowhere", None, &[("if-none-match", "*")]).await;
    unrouted.assert_problem(404, "route_not_found", "/api/v1/nowhere");
    assert_eq!(header(&unrouted, "cache-control"), Some("no-store"));
    assert_eq!(header(&unrouted, "etag"), None);

    // A problem big enough to compress stays identity: the envelope renders it after the
    // compression layer, so a compressed one would be plain JSON under `Content-Encoding`.
    let bad_events: Vec<Value> = (0..40)
        .map(|i| json!({"event_id": format!("e{i}")}))
        .collect();
    let rejected = request(
        &app,
        Method::POST,
        "/api/v1/interactions",
        Some(&key.secret),
        &[all_encodings],
        Some(Value::Array(bad_events)),
    )
    .await;
    assert!(rejected.body.len() > 500, "{}", rejected.body.len());
    assert_eq!(header(&rejected, "content-encoding"), None);
    let problem = rejected.assert_problem(422, "unprocessable", "/api/v1/interactions");
    assert_eq!(problem["rejected"].as_array().map(Vec::len), Some(40));
    assert_eq!(header(&rejected, "cache-control"), Some("no-store"));
    app.cleanup().await;
}

#[tokio::test]
async fn answers_over_500_bytes_are_compressed_under_their_own_etag() {
    let app = TestApp::new(Backend::Sqlite).await;
    let identity = get(&app, "/openapi.json", None, &[]).await;
    assert_eq!(header(&identity, "content-encoding"), None);
    let identity_tag = etag(&identity);
    assert_eq!(identity_tag, expected_etag(&identity.body));

    for coding in ["gzip", "br", "zstd"] {
        let asked = [("accept-encoding", coding)];
        let encoded = get(&app, "/openapi.json", None, &asked).await;
        assert_eq!(encoded.status, 200);
        assert_eq!(header(&encoded, "content-encoding"), Some(coding));
        assert!(encoded.body.len() < identity.body.len(), "{coding}");
        assert_eq!(decode(coding, &encoded.body), identity.body, "{coding}");
        assert_eq!(vary(&encoded), ["accept-encoding"], "{coding}");
        // A strong ETag names one representation: the encoded one has its own.
        let tag = etag(&encoded);
        assert_eq!(
            tag,
            format!("{}-{coding}\"", identity_tag.trim_end_matches('"'))
        );

        let revalidated = get(
            &app,
            "/openapi.json",
            None,
            &[asked[0], ("if-none-match", &tag)],
        )
        .await;
        assert_eq!(revalidated.status, 304, "{coding}");
        assert!(revalidated.body.is_empty());
        assert_eq!(etag(&revalidated), tag);
        assert_eq!(header(&revalidated, "content-encoding"), None);
        assert_eq!(
            header(&revalidated, "cache-control"),
            Some("public, max-age=300")
        );

        // The identity tag is another representation's: the encoded one comes in full, and the
        // encoded tag does not stand for the identity body either.
        let other = get(
            &app,
            "/openapi.json",
            None,
            &[asked[0], ("if-none-match", &identity_tag)],
        )
        .await;
        assert_eq!(other.status, 200, "{coding}");
        assert_eq!(etag(&other), tag);
        let plain = get(&app, "/openapi.json", None, &[("if-none-match", &tag)]).await;
        assert_eq!(plain.status, 200, "{coding}");
        assert_eq!(plain.body, identity.body);
    }
    app.cleanup().await;
}

#[tokio::test]
async fn answers_under_500_bytes_are_not_compressed() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Read]).await;
    let identity = get(&app, "/api/v1/tenant", Some(&key.secret), &[]).await;
    assert!(identity.body.len() < 500, "{}", identity.body.len());
    for coding in ["gzip", "br", "zstd", "gzip, br, zstd"] {
        let reply = get(
            &app,
            "/api/v1/tenant",
            Some(&key.secret),
            &[("accept-encoding", coding)],
        )
        .await;
        assert_eq!(header(&reply, "content-encoding"), None, "{coding}");
        assert_eq!(reply.body, identity.body, "{coding}");
        assert_eq!(etag(&reply), etag(&identity), "{coding}");
    }
    app.cleanup().await;
}

/// A flag's ETag is its version; compressed, it is `"1-gzip"`, and that tag works wherever the
/// version does: `If-None-Match` on a GET, `If-Match` on a PUT.
#[tokio::test]
async fn handler_etags_get_304_and_round_trip_through_compression() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = Some(admin.secret.as_str());
    let path = "/api/v1/flags/wordy";
    let created = request(
        &app,
        Method::POST,
        "/api/v1/flags",
        key,
        &[],
        Some(wordy_flag("wordy")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());

    let plain = get(&app, path, key, &[]).await;
    assert_eq!(etag(&plain), "\"1\"");
    let unchanged = get(&app, path, key, &[("if-none-match", "\"1\"")]).await;
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());

    let gzip = ("accept-encoding", "gzip");
    let encoded = get(&app, path, key, &[gzip]).await;
    assert_eq!(header(&encoded, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &encoded.body), plain.body);
    assert_eq!(etag(&encoded), "\"1-gzip\"");
    let unchanged = get(&app, path, key, &[gzip, ("if-none-match", "\"1-gzip\"")]).await;
    assert_eq!(unchanged.status, 304);
    assert_eq!(etag(&unchanged), "\"1-gzip\"");

    let mut changed = wordy_flag("wordy");
    changed["default_variant"] = json!("off");
    let replaced = request(
        &app,
        Method::PUT,
        path,
        key,
        &[gzip, ("if-match", "\"1-gzip\"")],
        Some(changed),
    )
    .await;
    assert_eq!(
        replaced.status,
        200,
        "{}",
        String::from_utf8_lossy(&decode("gzip", &replaced.body))
    );
    assert_eq!(etag(&replaced), "\"2-gzip\"");
    assert_eq!(header(&replaced, "cache-control"), Some("no-store"));
    // The old version's tag is stale now.
    let stale = get(&app, path, key, &[gzip, ("if-none-match", "\"1-gzip\"")]).await;
    assert_eq!(stale.status, 200);
    app.cleanup().await;
}

/// OFREP's bulk evaluation makes its own ETag and 304 (on POST); compressed, its tag gets the
/// coding, and sending that tag back still gets the handler's 304, under the client's tag.
#[tokio::test]
async fn ofrep_bulk_304s_survive_compression() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let key = Some(admin.secret.as_str());
    for i in 0..8 {
        let flag = json!({
            "key": format!("flag-{i}"), "type": "boolean", "status": "active",
            "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "default_variant": "on", "off_variant": "off"
        });
        let created = request(&app, Method::POST, "/api/v1/flags", key, &[], Some(flag)).await;
        assert_eq!(created.status, 201, "{}", created.text());
    }
    let path = "/ofrep/v1/evaluate/flags";
    let context = json!({"context": {"targetingKey": "user-42"}});
    let plain = request(&app, Method::POST, path, key, &[], Some(context.clone())).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert!(plain.body.len() > 500, "{}", plain.body.len());
    let plain_tag = etag(&plain);

    let gzip = ("accept-encoding", "gzip");
    let encoded = request(
        &app,
        Method::POST,
        path,
        key,
        &[gzip],
        Some(context.clone()),
    )
    .await;
    assert_eq!(header(&encoded, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &encoded.body), plain.body);
    let tag = etag(&encoded);
    assert_eq!(tag, format!("{}-gzip\"", plain_tag.trim_end_matches('"')));

    for (sent, echoed) in [(&tag, &tag), (&plain_tag, &plain_tag)] {
        let unchanged = request(
            &app,
            Method::POST,
            path,
            key,
            &[gzip, ("if-none-match", sent)],
            Some(context.clone()),
        )
        .await;
        assert_eq!(unchanged.status, 304, "{sent}");
        assert!(unchanged.body.is_empty());
        assert_eq!(&etag(&unchanged), echoed);
    }
    app.cleanup().await;
}

/// The change stream is never held back: the response comes at once, unencoded and without a
/// validator, and its first event arrives while the stream stays open.
#[tokio::test]
async fn the_flag_stream_is_neither_buffered_nor_compressed() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, key) = app.tenant("acme", &[Scope::Read]).await;
    let req = Request::builder()
        .uri("/api/v1/flags/stream")
        .header("authorization", format!("Bearer {}", key.secret))
        .header("accept-encoding", "gzip, br, zstd")
        .header("if-none-match", "*")
        .body(Body::empty())
        .unwrap();
    // Bounds, not synchronisation: a buffered stream would never produce its response.
    let bound = Duration::from_secs(10);
    let response = tokio::time::timeout(bound, tower::ServiceExt::oneshot(app.router.clone(), req))
        .await
        .expect("the stream's response comes before the stream ends")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers.get("content-type").unwrap(), "text/event-stream");
    assert_eq!(headers.get("content-encoding"), None);
    assert_eq!(headers.get("etag"), None);
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");

    let mut body = response.into_body();
    let frame = tokio::time::timeout(bound, body.frame())
        .await
        .expect("the first event comes while the stream is open")
        .expect("the stream goes on")
        .expect("a frame");
    let data = frame.into_data().expect("data");
    let text = std::str::from_utf8(&data).expect("plain text, not compressed bytes");
    assert!(text.contains("event: ready\n"), "{text:?}");
    assert!(!axum::body::HttpBody::is_end_stream(&body));
    app.cleanup().await;
}
