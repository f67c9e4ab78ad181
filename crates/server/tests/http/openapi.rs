//! The OpenAPI document matches the router in both directions.

use axum::http::Method;
use store::Backend;

use crate::TestApp;

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::new(Backend::Sqlite).await;
    let doc = app.get("/openapi.json", None).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Any value will do: the route must exist whatever the parameter.
        let concrete: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') && seg.ends_with('}') {
                    "x"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let reply = app.call(method.clone(), &concrete, None, None).await;
            let code = if reply.status.is_success() {
                String::new()
            } else {
                reply.json()["type"].as_str().unwrap_or("").to_owned()
            };
            assert!(
                !code.ends_with("route_not_found") && !code.ends_with("method_not_allowed"),
                "{method} {path} is documented but not routed ({code})"
            );
            operations += 1;
        }
    }
    assert!(operations >= 13, "{operations}");
    // Every documented operation says what it answers, and errors point at the problem schema.
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

/// API routes can only be added through utoipa's `routes!`, which documents them. A plain axum
/// `.route(...)` anywhere in the server would bypass the document, so none may exist, except in
/// the web console (`src/console/`), whose HTML pages are for people and not part of the API
/// document; every path it routes is `/` or under `/console`, so no API route can hide there.
#[test]
fn no_route_bypasses_the_document() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if path.components().any(|c| c.as_os_str() == "console") {
                    for routed in text.split(".route(").skip(1) {
                        let target = routed.trim_start();
                        assert!(
                            target.starts_with("\"/console") || target.starts_with("\"/\""),
                            "{} routes a path outside /console: {}",
                            path.display(),
                            target.lines().next().unwrap_or_default()
                        );
                    }
                    checked += 1;
                    continue;
                }
                for needle in [
                    ".route(",
                    ".route_service(",
                    ".nest(",
                    ".nest_service(",
                    "routing::get",
                    "routing::post",
                ] {
                    assert!(!text.contains(needle), "{} uses `{needle}`: add routes with utoipa's routes! so they are documented", path.display());
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 5);
}

/// `docs/openapi.json` is the document as generated; regenerate it with
/// `SIGNALBOX_UPDATE_OPENAPI=1 cargo test -p server --test http openapi` after changing routes.
#[test]
fn the_committed_openapi_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let mut current = server::openapi_document()
        .to_pretty_json()
        .expect("serialise the document");
    current.push('\n');
    if std::env::var_os("SIGNALBOX_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &current).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == current,
        "docs/openapi.json is stale; regenerate it with SIGNALBOX_UPDATE_OPENAPI=1 cargo test -p server --test http openapi"
    );
}
