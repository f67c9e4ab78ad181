//! The web console: every engine's data and controls as server-rendered pages, at `/console`.
//!
//! Pages are askama templates (`crates/server/templates/console/`, checked when the crate
//! builds), charts are SVG drawn on the server ([`charts`]), and the one script, htmx, swaps in
//! fragments where a page updates in place; every form also works without it. A person signs in
//! with an API key ([`session`]); handlers take a [`Session`] (page reads) or a
//! [`Submitted`] form (writes: CSRF-checked), check the scope the matching API route needs, call
//! the same service the API calls, and render.
//!
//! Adding an engine's page: a module here with its `SECTION` and `routes()`, a template under
//! `templates/console/`, and one line in [`SECTIONS`] and in [`router`].

pub(crate) mod assets;
pub(crate) mod charts;
mod experiments;
mod feedback;
mod flag_usage;
mod flags;
mod forecasts;
mod jobs;
mod keys;
mod limits;
mod llm;
mod overview;
mod predictions;
mod privacy;
mod rollouts;
pub(crate) mod session;
mod weber;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use store::Scope;

pub use assets::page_weight;
pub use session::ConsoleSettings;
pub(crate) use session::{Session, Submitted};

use crate::envelope::OwnErrorBody;
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// One entry of the console's navigation.
pub(crate) struct Section {
    /// Stable id, used to mark the current entry.
    pub id: &'static str,
    pub title: &'static str,
    pub path: &'static str,
    /// The scope a key needs to see the section at all.
    pub needs: Scope,
}

/// The navigation, in order.
const SECTIONS: &[Section] = &[
    overview::SECTION,
    weber::SECTION,
    predictions::SECTION,
    flags::SECTION,
    experiments::SECTION,
    forecasts::SECTION,
    limits::SECTION,
    keys::SECTION,
    llm::SECTION,
    jobs::SECTION,
    feedback::SECTION,
    privacy::SECTION,
];

/// The console's routes, with their own security headers; merged into the application.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/assets/{file}", get(assets::serve))
        .merge(overview::routes())
        .merge(weber::routes())
        .merge(predictions::routes())
        .merge(forecasts::routes())
        .merge(flags::routes())
        .merge(experiments::routes())
        .merge(keys::routes())
        .merge(limits::routes())
        .merge(jobs::routes())
        .merge(llm::routes())
        .merge(feedback::routes())
        .merge(privacy::routes())
        .merge(rollouts::routes())
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::from_fn(security_headers))
}

async fn not_found(uri: axum::http::Uri) -> ConsoleError {
    ConsoleError::NotFound(format!("the console has no page at {}", uri.path()))
}

/// Every console answer: never cached (pages hold tenant data; assets set their own), never
/// framed, scripts and styles from this origin only, no referrer leaving the site.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A navigation entry as the layout shows it.
pub(crate) struct NavItem {
    pub title: &'static str,
    pub path: &'static str,
    pub current: bool,
}

/// What every page's frame needs: title, navigation for the key's scopes, the tenant, the CSRF
/// token for forms, and what the key may do.
pub(crate) struct Chrome {
    pub title: String,
    pub tenant_name: String,
    pub tenant_id: String,
    pub key_id: String,
    pub nav: Vec<NavItem>,
    pub csrf: String,
    /// Whether the key is an admin's: the write controls of most pages need it, as the API's
    /// routes do.
    pub can_admin: bool,
    pub assets: &'static assets::AssetUrls,
}

impl Chrome {
    fn new(session: &Session, section: &'static str, title: String) -> Chrome {
        Chrome {
            title,
            tenant_name: session.principal.tenant.name.clone(),
            tenant_id: session.principal.tenant.id.clone(),
            key_id: session.principal.key_id.clone(),
            nav: SECTIONS
                .iter()
                .filter(|s| session.can(s.needs))
                .map(|s| NavItem {
                    title: s.title,
                    path: s.path,
                    current: s.id == section,
                })
                .collect(),
            csrf: session.csrf.clone(),
            can_admin: session.can(Scope::Admin),
            assets: assets::urls(),
        }
    }
}

/// Renders a page (or a fragment) as an HTML answer with `status`.
pub(crate) fn page(
    status: StatusCode,
    template: &impl askama::Template,
) -> Result<Response, ConsoleError> {
    let html = template.render().map_err(|e| {
        tracing::error!(error = %e, "console template failed to render");
        ConsoleError::Internal
    })?;
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if status.is_client_error() || status.is_server_error() {
        // An error page (a form shown again with its errors): counted by the envelope like any
        // error, its HTML left as it is rather than replaced by a problem.
        response.extensions_mut().insert(OwnErrorBody {
            kind: ProblemKind::for_status(status),
            detail: format!("console page answered {status}"),
        });
    }
    Ok(response)
}

/// Whether the request came from htmx (it wants a fragment, not a whole page).
pub(crate) fn is_htmx(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// Why a console request failed, shown as an HTML page (or, signed out, a trip to sign-in).
#[derive(Debug)]
pub(crate) enum ConsoleError {
    /// No live session: pages send the browser to sign in and come back to `next`.
    SignedOut {
        next: Option<String>,
    },
    Forbidden(String),
    NotFound(String),
    /// The input cannot be used (422), with a message naming the field.
    Invalid(String),
    /// Another error from a service, shown with its status and detail.
    Api(ApiError),
    Internal,
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::Api(e)
    }
}

impl From<store::StoreError> for ConsoleError {
    fn from(e: store::StoreError) -> Self {
        ConsoleError::Api(e.into())
    }
}

#[derive(askama::Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    css: &'a str,
    status: u16,
    title: &'a str,
    detail: &'a str,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (kind, detail) = match self {
            ConsoleError::SignedOut { next } => {
                let target = match next {
                    Some(next) => format!(
                        "/console/sign-in?next={}",
                        form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                    ),
                    None => "/console/sign-in".to_owned(),
                };
                let mut response = Redirect::to(&target).into_response();
                // htmx follows this header with a full navigation instead of swapping the
                // sign-in page into a fragment.
                if let Ok(value) = HeaderValue::from_str(&target) {
                    response.headers_mut().insert("hx-redirect", value);
                }
                return response;
            }
            ConsoleError::Forbidden(detail) => (ProblemKind::Forbidden, detail),
            ConsoleError::NotFound(detail) => (ProblemKind::NotFound, detail),
            ConsoleError::Invalid(detail) => (ProblemKind::Unprocessable, detail),
            ConsoleError::Api(e) => (e.kind, e.detail),
            ConsoleError::Internal => (
                ProblemKind::Internal,
                "the server failed to handle this request; it has been logged".to_owned(),
            ),
        };
        let shown = if kind.status().is_server_error() {
            "the server failed to handle this request; it has been logged"
        } else {
            detail.as_str()
        };
        let body = ErrorPage {
            css: assets::urls().css,
            status: kind.status().as_u16(),
            title: kind.title(),
            detail: shown,
        };
        let mut response = match page(kind.status(), &body) {
            Ok(response) => response,
            Err(_) => (kind.status(), shown.to_owned()).into_response(),
        };
        // Counted and logged by the envelope like any error, the HTML body left alone.
        response
            .extensions_mut()
            .insert(OwnErrorBody { kind, detail });
        response
    }
}
