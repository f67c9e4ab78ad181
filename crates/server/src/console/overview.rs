//! The overview: the health of each component the server depends on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use store::Scope;

use super::{page, Chrome, ConsoleError, Section, Session};
use crate::readiness::ComponentStatus;
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "overview",
    title: "Overview",
    path: "/console",
    needs: Scope::Read,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console", get(overview))
}

/// One dependency's row in the health table.
struct ComponentRow {
    name: &'static str,
    status: &'static str,
    backend: &'static str,
    latency: String,
    error: String,
}

impl ComponentRow {
    fn new(name: &'static str, c: ComponentStatus) -> ComponentRow {
        ComponentRow {
            name,
            status: c.status,
            backend: c.backend.unwrap_or(""),
            latency: c
                .latency_ms
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_default(),
            error: c.error.unwrap_or_default(),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    components: Vec<ComponentRow>,
}

async fn overview(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let components = state.inner.readiness.check(state.store()).await;
    page(
        StatusCode::OK,
        &OverviewPage {
            chrome: session.chrome(SECTION.id, "Overview"),
            components: vec![
                ComponentRow::new("Storage", components.storage),
                ComponentRow::new("Redis", components.redis),
                ComponentRow::new("NATS", components.nats),
            ],
        },
    )
}
