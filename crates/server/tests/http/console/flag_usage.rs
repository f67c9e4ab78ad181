//! Flag usage on the Flags pages: evaluations in the last 24 hours and stale flags on the list,
//! evaluations and assignments per variant on a flag's page, and only the tenant's own.

use axum::http::{Method, StatusCode};
use serde_json::json;
use store::{Backend, Scope};

use crate::flags::boolean_flag;
use crate::TestApp;

/// The text of the table with `id`, tags and all.
fn table<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let end = start + html[start..].find("</table>")?;
    Some(&html[start..end])
}

#[tokio::test]
async fn flags_pages_show_usage_per_variant_and_stale_flags() {
    let app = TestApp::new(Backend::Sqlite).await;
    let (_, admin) = app.tenant("acme", &[Scope::Admin]).await;
    let (_, other) = app.tenant("globex", &[Scope::Admin]).await;
    let key = admin.secret.as_str();
    for flag in [
        boolean_flag("checkout"),
        json!({"key": "pricing", "type": "multivariate", "status": "active",
               "variants": [{"key": "a", "value": "a", "weight_bp": 5000, "control": true},
                            {"key": "b", "value": "b", "weight_bp": 5000}],
               "default_variant": "a", "off_variant": "a", "track_exposure": true}),
    ] {
        let reply = app
            .call(Method::POST, "/api/v1/flags", Some(key), Some(flag))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    }
    let reply = app
        .call(
            Method::POST,
            "/api/v1/flags",
            Some(&other.secret),
            Some(boolean_flag("their-flag")),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    for user in ["u1", "u2", "u3", "u4"] {
        let reply = app
            .call(
                Method::POST,
                "/ofrep/v1/evaluate/flags",
                Some(key),
                Some(json!({"context": {"targetingKey": user}})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }

    let console = app.console(key).await;
    let list = console.get("/console/flags").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let html = list.text();
    let usage = table(&html, "flag-usage").expect("a usage table");
    assert!(
        usage.contains(">checkout</a></th><td class=\"num\">4</td>"),
        "{usage}"
    );
    assert!(
        usage.contains(">pricing</a></th><td class=\"num\">4</td>"),
        "{usage}"
    );
    assert!(!html.contains("their-flag"), "another tenant's flag leaked");
    let stale = table(&html, "stale-flags").expect("a stale-flags table");
    assert!(stale.contains(">checkout</a>"), "{stale}");
    assert!(stale.contains("serves variant `on` to everyone"), "{stale}");
    assert!(!stale.contains(">pricing</a>"), "{stale}");

    let detail = console.get("/console/flags/production/pricing").await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text());
    let html = detail.text();
    let variants = table(&html, "flag-usage-variants").expect("a per-variant table");
    // Four users, each evaluated once and assigned once, split between `a` and `b`.
    let count = |variant: &str, column: usize| -> u64 {
        variants
            .split("<tr>")
            .find(|row| row.contains(&format!("<th scope=\"row\">{variant}</th>")))
            .and_then(|row| row.split("<td class=\"num\">").nth(column))
            .and_then(|cell| cell.split('<').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(count("a", 1) + count("b", 1), 4, "{variants}");
    assert_eq!(count("a", 2) + count("b", 2), 4, "{variants}");
    assert!(html.contains("id=\"flag-evaluations-chart\""));
    assert!(
        html.contains("aria-label=\"Evaluations per hour, by variant\""),
        "{html}"
    );
    assert!(html.contains("aria-label=\"Users first assigned per hour, by variant\""));
    // Another tenant's flag page is missing.
    let theirs = console.get("/console/flags/production/their-flag").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
}
