//! API keys: the tenant's keys, a form to create one (its secret shown once, in the answer to
//! that post and never again), and a revoke button per key. Every action needs the admin scope,
//! as the API's key routes do, and goes through the same use case ([`crate::api_keys`]).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use store::{ApiKeyInfo, Scope, Scopes};

use super::session::cleared_cookie;
use super::{page, Chrome, ConsoleError, Section, Session, Submitted};
use crate::api_keys::{self, KeyRequest};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "keys",
    title: "API keys",
    path: "/console/keys",
    needs: Scope::Admin,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/keys", get(list_page).post(create))
        .route("/console/keys/{key_id}/revoke", post(revoke))
}

/// One key's row: never its secret.
struct KeyRow {
    id: String,
    label: String,
    prefix: String,
    scopes: String,
    user_id: String,
    created_at: String,
    revoked_at: Option<String>,
    /// The key this session signed in with: revoking it ends the session.
    is_current: bool,
}

/// A scope checkbox of the create form.
struct ScopeChoice {
    name: &'static str,
    checked: bool,
}

/// The key just created, shown once.
struct NewKey {
    id: String,
    secret: String,
}

/// What the create form shows again after a refused attempt.
#[derive(Default)]
struct CreateForm {
    label: String,
    user_id: String,
    label_error: Option<String>,
    scopes_error: Option<String>,
    user_id_error: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<KeyRow>,
    choices: Vec<ScopeChoice>,
    form: CreateForm,
    new_key: Option<NewKey>,
    /// Why the last action was refused (last admin key, unknown key).
    refusal: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/keys_signed_out.html")]
struct SelfRevokedPage<'a> {
    css: &'a str,
    key_id: &'a str,
}

async fn render(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    chosen: Scopes,
    form: CreateForm,
    new_key: Option<NewKey>,
    refusal: Option<String>,
) -> Result<Response, ConsoleError> {
    let keys = api_keys::list(state, &session.principal).await?;
    let held = session.principal.scopes;
    let mut response = page(
        status,
        &KeysPage {
            chrome: session.chrome(SECTION.id, "API keys"),
            keys: keys
                .into_iter()
                .map(|k| row(k, &session.principal.key_id))
                .collect(),
            // Only scopes this key could hand on (it holds them itself) are offered.
            choices: Scope::ALL
                .into_iter()
                .filter(|s| held.allows(*s))
                .map(|s| ScopeChoice {
                    name: s.as_str(),
                    checked: chosen.contains(s),
                })
                .collect(),
            form,
            new_key,
            refusal,
        },
    )?;
    // Also set by the console's layer; said here because this answer may carry a secret.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn row(k: ApiKeyInfo, current: &str) -> KeyRow {
    KeyRow {
        is_current: k.id == current,
        id: k.id,
        label: k.label.unwrap_or_default(),
        prefix: k.prefix,
        scopes: k.scopes.to_string().replace(',', ", "),
        user_id: k.user_id.unwrap_or_default(),
        created_at: crate::rfc3339_ms(k.created_at_ms),
        revoked_at: k.revoked_at_ms.map(crate::rfc3339_ms),
    }
}

/// `GET /console/keys`.
async fn list_page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    render(
        &state,
        &session,
        StatusCode::OK,
        Scopes::default(),
        CreateForm::default(),
        None,
        None,
    )
    .await
}

/// `POST /console/keys`: mints a key and answers the page with its secret, this once.
/// The fields come as pairs because `scopes` repeats (one per ticked box).
async fn create(
    State(state): State<AppState>,
    Submitted { session, form }: Submitted<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    let field = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let mut shown = CreateForm {
        label: field("label"),
        user_id: field("user_id"),
        ..CreateForm::default()
    };
    let mut scopes = Vec::new();
    for (_, value) in form.iter().filter(|(n, _)| n == "scopes") {
        match value.parse::<Scope>() {
            Ok(scope) => scopes.push(scope),
            Err(e) => shown.scopes_error = Some(e.to_string()),
        }
    }
    let chosen: Scopes = scopes.into_iter().collect();
    if chosen.is_empty() && shown.scopes_error.is_none() {
        shown.scopes_error = Some("choose at least one scope".to_owned());
    }
    if shown.scopes_error.is_some() {
        return render(
            &state,
            &session,
            StatusCode::UNPROCESSABLE_ENTITY,
            chosen,
            shown,
            None,
            None,
        )
        .await;
    }
    let label = (!shown.label.is_empty()).then_some(shown.label.as_str());
    let user_id = (!shown.user_id.is_empty()).then_some(shown.user_id.as_str());
    let request = KeyRequest {
        scopes: chosen,
        label,
        user_id,
    };
    match api_keys::create(&state, &session.principal, request).await {
        Ok(issued) => {
            tracing::info!(tenant_id = %session.tenant_id(), key_id = %issued.info.id, "console created an API key");
            let new_key = NewKey {
                id: issued.info.id,
                secret: issued.secret,
            };
            render(
                &state,
                &session,
                StatusCode::CREATED,
                Scopes::default(),
                CreateForm::default(),
                Some(new_key),
                None,
            )
            .await
        }
        Err(e) => match invalid_field(&e) {
            Some(field) => {
                let message = e.detail.clone();
                match field {
                    "label" => shown.label_error = Some(message),
                    "user_id" => shown.user_id_error = Some(message),
                    _ => shown.scopes_error = Some(message),
                }
                render(
                    &state,
                    &session,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    chosen,
                    shown,
                    None,
                    None,
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

/// The form field a refusal is about, when it is about one.
fn invalid_field(e: &ApiError) -> Option<&'static str> {
    if e.kind != ProblemKind::InvalidField {
        return None;
    }
    let named = e.extensions.get("field").and_then(|v| v.as_str())?;
    ["label", "user_id", "scopes"]
        .into_iter()
        .find(|f| *f == named)
}

/// `POST /console/keys/{key_id}/revoke`. Revoking the key this session signed in with ends the
/// session (the key no longer signs anything in): the answer says so and drops the cookie.
async fn revoke(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
    Submitted { session, .. }: Submitted<serde::de::IgnoredAny>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    match api_keys::revoke(&state, &session.principal, &key_id).await {
        Ok(key) => {
            tracing::info!(tenant_id = %session.tenant_id(), key_id = %key.id, "console revoked an API key");
            if key.id == session.principal.key_id {
                session.end(&state).await?;
                let mut response = page(
                    StatusCode::OK,
                    &SelfRevokedPage {
                        css: super::assets::urls().css,
                        key_id: &key.id,
                    },
                )?;
                if let Some(cookie) = cleared_cookie(&state) {
                    response.headers_mut().insert(header::SET_COOKIE, cookie);
                }
                return Ok(response);
            }
            Ok(Redirect::to("/console/keys").into_response())
        }
        // Refusals a person can act on are shown on the page itself, beside the list.
        Err(e) if e.kind == ProblemKind::LastAdminKey || e.kind == ProblemKind::NotFound => {
            let status = e.kind.status();
            render(
                &state,
                &session,
                status,
                Scopes::default(),
                CreateForm::default(),
                None,
                Some(e.detail),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
