//! End-to-end tests against real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use loadtest::{parse_header, run, LoadTestError, Plan, Preset, Report, Stop};

/// What the `/echo` handler saw for one request.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    len: usize,
    host: Option<String>,
    x_test: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn echo(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> String {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        len: body.len(),
        host: text("host"),
        x_test: text("x-test"),
    };
    log.lock().unwrap().push(seen);
    body.len().to_string()
}

/// Starts the test server on 127.0.0.1:0; it runs until the test's runtime
/// shuts down.
async fn start_server() -> (SocketAddr, Log) {
    let log = Log::default();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
        .route("/echo", post(echo))
        .route(
            "/close",
            get(|| async { ([(header::CONNECTION, "close")], "bye") }),
        )
        .with_state(Arc::clone(&log));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, log)
}

fn plan(addr: SocketAddr, path: &str, connections: usize, stop: Stop) -> Plan {
    let url = format!("http://{addr}{path}").parse().unwrap();
    Plan::new(url, connections, stop)
}

fn assert_ordered(report: &Report) {
    let l = &report.latency_ms;
    assert!(l.p50 > 0.0, "{l:?}");
    assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, "{l:?}");
    assert!(l.mean > 0.0 && l.mean <= l.max, "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_budget_is_exact_across_connections() {
    let (addr, _) = start_server().await;
    let report = run(plan(addr, "/ok", 4, Stop::Requests(500)))
        .await
        .unwrap();
    assert_eq!(report.requests, 500);
    assert_eq!(report.transport_errors, 0);
    assert_eq!(
        report.status_counts.into_iter().collect::<Vec<_>>(),
        [(200, 500)]
    );
    assert_eq!(report.connections, 4);
    assert!(report.elapsed_seconds > 0.0);
    assert!(report.requests_per_second > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_2xx_statuses_are_counted_by_code() {
    let (addr, _) = start_server().await;
    let report = run(plan(addr, "/teapot", 2, Stop::Requests(50)))
        .await
        .unwrap();
    assert_eq!(report.requests, 50);
    assert_eq!(
        report.status_counts.into_iter().collect::<Vec<_>>(),
        [(418, 50)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_body_and_headers_reach_the_server() {
    let (addr, log) = start_server().await;
    let mut plan = plan(addr, "/echo", 3, Stop::Requests(20));
    plan.method = http::Method::POST;
    plan.body = Bytes::from_static(b"hello world");
    plan.headers.push(parse_header("X-Test: yes").unwrap());
    plan.headers
        .push(parse_header("Content-Type: text/plain").unwrap());

    let report = run(plan).await.unwrap();
    assert_eq!(report.requests, 20);
    assert_eq!(report.status_counts.get(&200), Some(&20));

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 20);
    let expected = Seen {
        len: 11,
        host: Some(addr.to_string()),
        x_test: Some("yes".to_owned()),
    };
    assert!(seen.iter().all(|s| *s == expected), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_stop_finishes_with_ordered_percentiles() {
    let (addr, _) = start_server().await;
    let report = run(plan(
        addr,
        "/ok",
        2,
        Stop::Duration(Duration::from_millis(200)),
    ))
    .await
    .unwrap();
    assert!(report.requests > 0);
    assert_eq!(report.transport_errors, 0);
    assert!(report.elapsed_seconds >= 0.2, "{report:?}");
    assert!(report.elapsed_seconds < 10.0, "{report:?}");
    assert_ordered(&report);

    let text = report.to_text();
    assert!(text.contains("req/s"), "{text}");
    assert!(text.contains("p99"), "{text}");
    assert!(text.contains("200 x "), "{text}");

    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "requests",
        "transport_errors",
        "elapsed_seconds",
        "requests_per_second",
        "latency_ms",
        "status_counts",
        "connections",
        "urls",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert!(json["latency_ms"]["p90"].is_f64());
    assert!(json["latency_ms"]["p95"].is_f64());
    assert!(json["latency_ms"]["min"].is_f64());
    assert!(!text.contains("per URL"), "{text}");
    assert!(json["status_counts"]["200"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_responses_reconnect_without_errors() {
    let (addr, _) = start_server().await;
    let report = run(plan(addr, "/close", 2, Stop::Requests(30)))
        .await
        .unwrap();
    assert_eq!(report.requests, 30);
    assert_eq!(report.transport_errors, 0);
    assert_eq!(report.status_counts.get(&200), Some(&30));
}

fn expect_invalid(plan: Plan) -> LoadTestError {
    let err = plan.validate().unwrap_err();
    assert!(!err.to_string().contains('\n'), "{err}");
    err
}

#[tokio::test]
async fn non_loopback_target_is_refused_before_connecting() {
    let p = Plan::new("http://10.1.2.3/".parse().unwrap(), 1, Stop::Requests(1));
    let err = expect_invalid(p.clone());
    assert!(matches!(err, LoadTestError::NotLoopback { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "url: target 10.1.2.3 is not a loopback address; loadtest only sends traffic to this machine"
    );
    // `run` must refuse at once rather than trying (and timing out) to connect.
    let err = tokio::time::timeout(Duration::from_secs(5), run(p))
        .await
        .expect("run must refuse without touching the network")
        .unwrap_err();
    assert!(matches!(err, LoadTestError::NotLoopback { .. }), "{err:?}");

    let v6 = Plan::new(
        "http://[2001:db8::1]:8080/".parse().unwrap(),
        1,
        Stop::Requests(1),
    );
    assert!(matches!(
        expect_invalid(v6),
        LoadTestError::NotLoopback { .. }
    ));
}

#[test]
fn https_is_refused() {
    let err = expect_invalid(Plan::new(
        "https://127.0.0.1/".parse().unwrap(),
        1,
        Stop::Requests(1),
    ));
    assert!(matches!(err, LoadTestError::UnsupportedScheme), "{err:?}");
    assert_eq!(err.to_string(), "url: only http:// targets are supported");
}

#[test]
fn connection_count_is_bounded() {
    let url: http::Uri = "http://127.0.0.1:8080/".parse().unwrap();
    for n in [0, 1025, 2000] {
        let err = expect_invalid(Plan::new(url.clone(), n, Stop::Requests(1)));
        assert!(
            matches!(err, LoadTestError::Connections { got } if got == n),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "connections: must be between 1 and 1024");
    }
    for n in [1, 1024] {
        Plan::new(url.clone(), n, Stop::Requests(1))
            .validate()
            .unwrap();
    }
}

#[test]
fn duration_is_bounded() {
    let url: http::Uri = "http://127.0.0.1:8080/".parse().unwrap();
    let err = expect_invalid(Plan::new(
        url.clone(),
        1,
        Stop::Duration(Duration::from_secs(11 * 60)),
    ));
    assert!(matches!(err, LoadTestError::DurationTooLong), "{err:?}");
    assert_eq!(err.to_string(), "duration: at most 10m");

    let err = expect_invalid(Plan::new(url.clone(), 1, Stop::Duration(Duration::ZERO)));
    assert!(matches!(err, LoadTestError::DurationZero), "{err:?}");

    Plan::new(url, 1, Stop::Duration(Duration::from_secs(600)))
        .validate()
        .unwrap();
}

#[test]
fn request_count_is_bounded() {
    let url: http::Uri = "http://127.0.0.1:8080/".parse().unwrap();
    for n in [0, 100_000_001] {
        let err = expect_invalid(Plan::new(url.clone(), 1, Stop::Requests(n)));
        assert!(
            matches!(err, LoadTestError::Requests { got } if got == n),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "requests: must be between 1 and 100000000");
    }
    Plan::new(url, 1, Stop::Requests(100_000_000))
        .validate()
        .unwrap();
}

#[test]
fn other_plan_fields_are_checked() {
    let url: http::Uri = "http://127.0.0.1:8080/".parse().unwrap();

    let mut p = Plan::new(url.clone(), 1, Stop::Requests(1));
    p.request_timeout = Duration::ZERO;
    assert!(matches!(expect_invalid(p), LoadTestError::RequestTimeout));

    let mut p = Plan::new(url.clone(), 1, Stop::Requests(1));
    p.method = http::Method::CONNECT;
    assert!(matches!(
        expect_invalid(p),
        LoadTestError::UnsupportedMethod { .. }
    ));

    let mut p = Plan::new(url, 1, Stop::Requests(1));
    p.headers.push(parse_header("Content-Length: 5").unwrap());
    let err = expect_invalid(p);
    assert!(matches!(err, LoadTestError::InvalidHeader(_)), "{err:?}");
    assert!(err.to_string().starts_with("header: "), "{err}");
}

#[tokio::test]
async fn unreachable_port_returns_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let err = run(plan(addr, "/", 3, Stop::Requests(10)))
        .await
        .unwrap_err();
    match &err {
        LoadTestError::Connect { target, .. } => assert_eq!(*target, addr.to_string()),
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("could not connect to {addr}: ")),
        "{err}"
    );
}

#[tokio::test]
async fn server_dropping_connections_counts_transport_errors_and_stops() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    // A huge budget: the run must still end promptly rather than reconnect
    // forever, because no connection ever yields a response.
    let report = run(plan(addr, "/", 2, Stop::Requests(1_000_000)))
        .await
        .unwrap();
    assert_eq!(report.requests, 0);
    assert_eq!(report.transport_errors, 2);
    assert!(report.status_counts.is_empty());
    assert_eq!(report.latency_ms.max, 0.0);
}

#[tokio::test]
async fn request_timeout_counts_as_transport_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold connections open without ever answering.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut p = plan(addr, "/", 1, Stop::Requests(5));
    p.request_timeout = Duration::from_millis(100);
    let report = run(p).await.unwrap();
    assert_eq!(report.requests, 0);
    assert_eq!(report.transport_errors, 1);
}

#[test]
fn parse_header_accepts_good_input() {
    let (name, value) = parse_header("X-Tenant: acme").unwrap();
    assert_eq!(name.as_str(), "x-tenant");
    assert_eq!(value, "acme");

    let (name, value) = parse_header("Authorization:Bearer a:b:c").unwrap();
    assert_eq!(name, header::AUTHORIZATION);
    assert_eq!(value, "Bearer a:b:c");

    let (_, value) = parse_header("X-Empty:").unwrap();
    assert_eq!(value, "");

    let (_, value) = parse_header("X-Pad: \t spaced out \t").unwrap();
    assert_eq!(value, "spaced out");
}

#[test]
fn parse_header_rejects_bad_input() {
    for bad in [
        "",
        "no colon",
        ": value",
        "   : value",
        "Bad Name: v",
        "Bad\u{e9}: v",
        "X-Ok: line\nbreak",
        "X-Ok: bell\u{7}",
    ] {
        let err = parse_header(bad).unwrap_err();
        assert!(
            matches!(err, LoadTestError::InvalidHeader(_)),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().starts_with("header: "), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_urls_share_the_requests_round_robin_with_per_url_figures() {
    let (addr, _) = start_server().await;
    let mut p = plan(addr, "/ok", 3, Stop::Requests(300));
    p.extra_urls = vec![
        format!("http://{addr}/teapot").parse().unwrap(),
        format!("http://{addr}/ok?again=1").parse().unwrap(),
    ];
    let report = run(p).await.unwrap();
    assert_eq!(report.requests, 300);
    assert_eq!(report.transport_errors, 0);
    let urls: Vec<(&str, u64)> = report
        .urls
        .iter()
        .map(|u| (u.url.as_str(), u.requests))
        .collect();
    // One shared counter: exactly a third each, in plan order.
    assert_eq!(urls, [("/ok", 100), ("/teapot", 100), ("/ok?again=1", 100)]);
    // Each URL's statuses are its own (the teapot answers 418, the others 200).
    assert_eq!(
        report.urls[0].status_counts.iter().collect::<Vec<_>>(),
        [(&200, &100)]
    );
    assert_eq!(
        report.urls[1].status_counts.iter().collect::<Vec<_>>(),
        [(&418, &100)]
    );
    assert_eq!(report.status_counts.get(&200), Some(&200));
    assert_eq!(report.status_counts.get(&418), Some(&100));
    for u in &report.urls {
        let l = &u.latency_ms;
        assert!(0.0 < l.min && l.min <= l.p50 && l.p50 <= l.p95, "{l:?}");
        assert!(l.p95 <= l.p99 && l.p99 <= l.max, "{l:?}");
    }
    assert!(report.latency_ms.min <= report.urls[1].latency_ms.min);

    let text = report.to_text();
    assert!(text.contains("per URL (round-robin):"), "{text}");
    assert!(text.contains("  /teapot  100 req"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["urls"][2]["url"], "/ok?again=1");
    assert!(json["urls"][1]["latency_ms"]["p95"].is_f64(), "{json}");
    assert!(json["latency_ms"]["min"].is_f64(), "{json}");
}

#[test]
fn urls_of_one_run_must_name_one_server() {
    let mut p = Plan::new(
        "http://127.0.0.1:8080/a".parse().unwrap(),
        1,
        Stop::Requests(1),
    );
    p.extra_urls = vec!["http://127.0.0.1:8081/b".parse().unwrap()];
    let err = expect_invalid(p.clone());
    assert!(matches!(err, LoadTestError::MixedTargets { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "url: http://127.0.0.1:8081/b is not on the same host and port as http://127.0.0.1:8080/a; every URL of one run must name the same server"
    );
    // A further URL is held to every rule the first one is.
    p.extra_urls = vec!["http://10.0.0.1:8080/b".parse().unwrap()];
    assert!(matches!(
        expect_invalid(p.clone()),
        LoadTestError::NotLoopback { .. }
    ));
    p.extra_urls = vec!["http://127.0.0.1:8080/b?x=1".parse().unwrap()];
    p.validate().unwrap();
}

#[test]
fn presets_are_the_seed_load_levels() {
    let levels: Vec<(String, usize, u64)> = Preset::ALL
        .iter()
        .map(|p| (p.to_string(), p.connections(), p.duration().as_secs()))
        .collect();
    assert_eq!(
        levels,
        [
            ("light".to_owned(), 10, 60),
            ("normal".to_owned(), 50, 300),
            ("heavy".to_owned(), 100, 180),
            ("stress".to_owned(), 200, 60),
        ]
    );
    for p in Preset::ALL {
        assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        // Every preset is a plan `validate` accepts.
        Plan::new(
            "http://127.0.0.1/".parse().unwrap(),
            p.connections(),
            Stop::Duration(p.duration()),
        )
        .validate()
        .unwrap();
    }
    let err = "Heavy!".parse::<Preset>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "preset: unknown preset \"Heavy!\" (expected light, normal, heavy or stress)"
    );
}
