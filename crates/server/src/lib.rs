//! signalbox's HTTP serving layer: the axum application every engine's routes live in.
//!
//! A request passes, outermost first: CORS when configured ([`CorsSettings`]: preflights are
//! answered here) → the [request envelope](envelope) (request id, tracing span,
//! timeout, problem rendering, metrics) → HTTP caching (`http_cache`: 304s, `Cache-Control`,
//! compression, ETags) → the body limit → panic catching → the route's handler,
//! whose extractors authenticate ([`extract::Auth`]) and parse input ([`extract::ApiJson`]) into
//! [`problem::ApiError`]s on failure. Handlers call the store and the engines, never the other
//! way round.
//!
//! Ingested interactions reach profiles through the event log and the profile worker
//! ([`run_profile_worker`]), which the caller runs beside [`serve`].
//!
//! ```no_run
//! # async fn demo(store: store::Store) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let metrics = Arc::new(telemetry::Metrics::new(Default::default()));
//! let events = stream::EventLog::open_file("./data/events".as_ref(), Default::default()).await?;
//! let state = server::AppState::new(store, metrics, server::ServerConfig::default(), events)?;
//! let worker = tokio::spawn(server::run_profile_worker(state.clone(), std::future::pending()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server::serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! worker.abort();
//! # Ok(()) }
//! ```

mod analytics;
mod api_keys;
pub mod client_addr;
mod connections;
mod console;
mod context;
mod cors;
pub mod custody;
pub mod demo;
pub mod envelope;
pub mod envoy_rls;
pub mod evaluation_counts;
pub mod experiments;
pub mod exposures;
pub mod extract;
mod feature_flags;
pub mod feedback;
mod flag_admin;
pub mod flag_usage;
pub mod forecast_diagnostics;
pub mod forecast_files;
pub mod forecasts;
mod http_cache;
pub mod ingest;
pub mod jobs;
pub mod llm;
pub mod openapi;
pub mod predictions;
pub mod problem;
mod profiles;
pub mod rate_limit;
mod read_cache;
mod readiness;
pub mod rollouts;
mod routes;
mod state;
mod weber_admin;
mod weber_reads;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

pub use client_addr::{ClientAddr, TrustedProxies};
pub use connections::ConnectionSettings;
pub use console::{page_weight as console_page_weight, ConsoleSettings};
pub use cors::{CorsOriginError, CorsSettings};
pub use custody::{run_audit_checkpointer, Custody, CustodyError, CustodyKeys, CustodySettings};
pub use evaluation_counts::{run_flag_usage_writer, EvaluationCounter, FlagUsageSettings};
pub use exposures::{run_exposure_writer, ExposureRecorder, ExposureSettings};
pub use jobs::{run_job_workers, JobService, JobSettings};
pub use llm::{run_llm_retention, LlmService, LlmSettings};
pub use profiles::{run_profile_worker, ProfileSettings, PROFILE_ENTRY_BYTES};
pub use rate_limit::{RateLimitBackend, RateLimitSettings, RateLimiter};
pub use read_cache::ReadCacheSettings;
pub use readiness::{ComponentStatus, Components};
pub use routes::jobs::{JobStatsView, JobView, ScheduleView};
pub use state::{AppState, MetricsToken, ServerConfig, SetupError};

use problem::{ApiError, ProblemKind};

/// The whole application, ready to serve.
pub fn app(state: AppState) -> Router {
    let (router, mut document) = routes::api().split_for_parts();
    openapi::describe_caching(&mut document);
    openapi::describe_rate_limits(&mut document);
    openapi::describe_common_errors(&mut document);
    let json = document.to_pretty_json().unwrap_or_default();
    let _ = state.inner.openapi_json.set(bytes::Bytes::from(json));
    let cors = state.config().cors.layer();
    // The web console's pages sit beside the API, behind the same envelope and limits; they
    // are not part of the OpenAPI document (HTML for people, not a contract for programs).
    let router = router
        .merge(console::router())
        .fallback(route_not_found)
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::internal().into_response()
        }))
        .layer(DefaultBodyLimit::max(state.config().body_limit_bytes))
        // HTTP caching, innermost first: ETags hashed from the identity body, then compression,
        // then 304s and Cache-Control on the final representation. Inside the envelope, so
        // errors are still rendered as problems (and never compressed or cached).
        .layer(axum::middleware::from_fn(http_cache::etag))
        .layer(http_cache::compression())
        .layer(axum::middleware::from_fn(http_cache::conditional))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::middleware,
        ))
        // The client's address, resolved once (trusted proxies' forwarding headers) for the
        // rate limiter and anything else that uses it.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client_addr::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            envelope::envelope,
        ))
        .with_state(state);
    // Outermost: a preflight is answered before the envelope, the rate limiter and
    // authentication (browsers send it without the API key), and every other answer, problems
    // and 429s included, carries the CORS headers scripts need to read it.
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ProblemKind::RouteNotFound,
        format!("no route matches {}; see /openapi.json", uri.path()),
    )
}

/// The complete OpenAPI 3.1 document, as `/openapi.json` serves it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut document = routes::document();
    openapi::describe_caching(&mut document);
    openapi::describe_rate_limits(&mut document);
    openapi::describe_common_errors(&mut document);
    document
}

/// Serves `state`'s application on `listener` until `shutdown` resolves, then stops accepting,
/// lets in-flight requests finish (up to the configured grace period) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.config().shutdown_grace;
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping_state = state.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        // Change streams never finish by themselves; end them so draining can.
        stopping_state.flags().close_streams();
        let _ = stopping_tx.send(());
    };
    let sweeper = state.rate_limiter().cloned().map(|limiter| {
        tokio::spawn(async move {
            // Idle keys leave the in-memory limiters without waiting for a full shard.
            let mut ticks = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                ticks.tick().await;
                limiter.sweep();
            }
        })
    });
    let settings = state.config().connections.clone();
    let metrics = state.metrics().clone();
    let server = connections::serve(listener, app(state), settings, metrics, signal);
    let server = std::pin::pin!(server);
    let deadline = async {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still running after the grace period; stopping anyway");
            Ok(())
        }
    };
    if let Some(sweeper) = sweeper {
        sweeper.abort();
    }
    result
}

/// Keeps flag snapshots in step with the store until `stopped` resolves: every
/// [`ServerConfig::flag_refresh_interval`] it reloads the environments in memory whose stored
/// flags changed (changes made by another replica or by `signalbox flags import`) and streams
/// those changes. Changes made through this server's admin API are served at once without it.
pub async fn run_flag_refresher(state: AppState, stopped: impl Future<Output = ()>) {
    let mut ticks = tokio::time::interval(state.config().flag_refresh_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = std::pin::pin!(stopped);
    let refresh = async {
        loop {
            ticks.tick().await;
            state.flags().refresh_all(state.store()).await;
        }
    };
    tokio::select! {
        () = stopped => {}
        () = refresh => {}
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-01-02T03:04:05.678Z`): how signalbox
/// writes times, over HTTP and in CLI output alike.
///
/// ```
/// assert_eq!(server::rfc3339_ms(1_588_687_728_923), "2020-05-05T14:08:48.923Z");
/// ```
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub(crate) fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
