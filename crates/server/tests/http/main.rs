//! HTTP integration tests: the real application (router, middleware, store) in process.
//! Requests go through `tower::ServiceExt::oneshot`, or a real socket where the test is about
//! connections (shutdown).

mod audit;
mod bad_input;
mod console;
mod contract;
mod cors;
mod database;
mod experiments;
mod feedback;
mod feedback_custody;
mod feedback_migration;
mod feedback_reports;
mod feedback_retention;
mod findings_experiments;
mod findings_guard;
mod findings_rules;
mod findings_usage;
mod flag_usage;
mod flags;
mod forecast;
mod http_caching;
mod ingest;
mod isolation;
mod jobs;
mod llm;
mod observability;
mod openapi;
mod predictions;
mod privacy;
mod rate_limit;
mod rollouts;
mod serving;
mod weber;
mod weber_surface;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use server::{AppState, ServerConfig};
use store::testing::TestStore;
use store::{Backend, Scope, Scopes, Tier};
use tower::ServiceExt;

/// An application over a private store, plus ways to poke it.
pub struct TestApp {
    pub state: AppState,
    pub router: axum::Router,
    pub fixture: TestStore,
    /// The event log's directory; kept so a test can reopen the log.
    pub events_dir: tempfile::TempDir,
    stop_worker: tokio::sync::watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
    exposure_writer: tokio::task::JoinHandle<()>,
}

/// What came back, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts this is a well-formed problem with the given status and code; returns the body.
    pub fn assert_problem(&self, status: u16, code: &str, instance: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "{}",
            self.text()
        );
        let body = self.json();
        assert_eq!(
            body["type"],
            format!("urn:signalbox:problem:{code}"),
            "{body}"
        );
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(body["instance"], instance, "{body}");
        assert!(
            body["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|t| !t.is_empty()),
            "{body}"
        );
        let echoed = self
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok());
        assert_eq!(body["request_id"].as_str(), echoed, "{body}");
        body
    }
}

impl TestApp {
    pub async fn new(backend: Backend) -> TestApp {
        TestApp::with_config(backend, ServerConfig::default()).await
    }

    pub async fn with_config(backend: Backend, config: ServerConfig) -> TestApp {
        let events_dir = tempfile::tempdir().expect("temp dir");
        let events = stream::EventLog::open_file(events_dir.path(), Default::default())
            .await
            .expect("event log");
        TestApp::with_event_log(backend, config, events, events_dir).await
    }

    /// An application whose ingested events travel through `events`.
    pub async fn with_event_log(
        backend: Backend,
        config: ServerConfig,
        events: stream::EventLog,
        events_dir: tempfile::TempDir,
    ) -> TestApp {
        let fixture = TestStore::new(backend).await;
        TestApp::assemble(fixture, config, events, events_dir)
    }

    /// Like [`TestApp::over_store`], with `config`.
    pub async fn over_store_with_config(fixture: TestStore, config: ServerConfig) -> TestApp {
        let events_dir = tempfile::tempdir().expect("temp dir");
        let events = stream::EventLog::open_file(events_dir.path(), Default::default())
            .await
            .expect("event log");
        TestApp::assemble(fixture, config, events, events_dir)
    }

    /// An application over a store the test has already filled (the worker starts now).
    pub async fn over_store(fixture: TestStore) -> TestApp {
        let events_dir = tempfile::tempdir().expect("temp dir");
        let events = stream::EventLog::open_file(events_dir.path(), Default::default())
            .await
            .expect("event log");
        TestApp::assemble(fixture, ServerConfig::default(), events, events_dir)
    }

    fn assemble(
        fixture: TestStore,
        config: ServerConfig,
        events: stream::EventLog,
        events_dir: tempfile::TempDir,
    ) -> TestApp {
        let metrics = Arc::new(telemetry::Metrics::new(Default::default()));
        let state = AppState::new(fixture.store.clone(), metrics, config, events).expect("state");
        state.install_forecasts(Arc::new(server::forecasts::ForecastService::new(
            forecast::demo_model(),
            &Default::default(),
        )));
        let router = server::app(state.clone());
        let (stop_worker, stopped) = tokio::sync::watch::channel(false);
        let exposures_stopped = stopped.clone();
        let worker = tokio::spawn(server::run_profile_worker(state.clone(), async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        }));
        let exposure_writer =
            tokio::spawn(server::run_exposure_writer(state.clone(), async move {
                let mut stopped = exposures_stopped;
                let _ = stopped.wait_for(|s| *s).await;
            }));
        TestApp {
            state,
            router,
            fixture,
            events_dir,
            stop_worker,
            worker,
            exposure_writer,
        }
    }

    /// Waits until the profile worker has applied every event ingested so far.
    pub async fn settle(&self) {
        let last = self.state.events().last_offset().await.expect("event log");
        self.state.profiles_applied(last).await;
    }

    /// A tenant and a key with `scopes`.
    pub async fn tenant(&self, name: &str, scopes: &[Scope]) -> (store::Tenant, store::IssuedKey) {
        let store = &self.fixture.store;
        let tenant = store.create_tenant(name, Tier::Starter).await.unwrap();
        let key = store
            .issue_api_key(&tenant.id, scopes.iter().copied().collect::<Scopes>(), None)
            .await
            .unwrap();
        (tenant, key)
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let is_stream = headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let body = if is_stream {
            // An event stream never ends: take its first event only.
            let mut body = response.into_body();
            let frame = body.frame().await.expect("a first event").expect("body");
            frame.into_data().expect("data").to_vec()
        } else {
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
                .to_vec()
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        json: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let body = match json {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        self.call(Method::GET, path, key, None).await
    }

    pub async fn cleanup(self) {
        let _ = self.stop_worker.send(true);
        self.worker.await.expect("worker ends cleanly");
        self.exposure_writer
            .await
            .expect("exposure writer ends cleanly");
        self.fixture.cleanup().await;
    }
}
