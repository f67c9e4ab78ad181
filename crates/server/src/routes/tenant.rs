//! The caller's own tenant and its API keys. Every query is keyed by the caller's tenant id, so
//! another tenant's key id is indistinguishable from a missing one (404).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use store::{ApiKeyInfo, Scope, Scopes};
use utoipa::ToSchema;

use crate::extract::{ApiJson, Auth};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// The caller's tenant and the key used for this request.
#[derive(Serialize, ToSchema)]
pub(crate) struct TenantResponse {
    id: String,
    name: String,
    #[schema(value_type = crate::openapi::TierName)]
    tier: store::Tier,
    created_at: String,
    /// The id of the API key that made this request.
    key_id: String,
    /// That key's scopes.
    #[schema(value_type = Vec<crate::openapi::ScopeName>)]
    scopes: Scopes,
    /// The user that key is bound to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
}

/// Who am I: the caller's tenant and key. Any valid key may ask.
#[utoipa::path(get, path = "/api/v1/tenant", tag = "tenant", security(("api_key" = [])),
    responses(
        (status = 200, body = TenantResponse),
        (status = 401, description = "Missing or invalid API key", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn current_tenant(auth: Auth) -> axum::Json<TenantResponse> {
    let p = &auth.0;
    axum::Json(TenantResponse {
        id: p.tenant.id.clone(),
        name: p.tenant.name.clone(),
        tier: p.tenant.tier,
        created_at: crate::rfc3339_ms(p.tenant.created_at_ms),
        key_id: p.key_id.clone(),
        scopes: p.scopes,
        user_id: p.user_id.clone(),
    })
}

/// A key to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKeyRequest {
    /// At least one of `read`, `write`, `admin`, `assert_user`. `assert_user` lets the key
    /// name the user it acts for in `X-User-Id` (per-user rate limits); `admin` implies it.
    #[schema(value_type = Vec<crate::openapi::ScopeName>, min_items = 1)]
    scopes: Vec<Scope>,
    /// A note for people (1-100 characters after trimming, no control characters), e.g. where
    /// the key is used.
    #[schema(
        max_length = 100,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    label: Option<String>,
    /// Bind the key to one user (1-128 visible ASCII characters): per-user rate limits count
    /// its requests against this user, whatever `X-User-Id` says.
    #[schema(min_length = 1, max_length = 128)]
    user_id: Option<String>,
}

/// A key as listed: never the secret.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApiKeyResponse {
    id: String,
    /// The first characters of the secret, to tell keys apart.
    prefix: String,
    #[schema(value_type = Vec<crate::openapi::ScopeName>)]
    scopes: Scopes,
    label: Option<String>,
    /// The user the key is bound to, if any.
    user_id: Option<String>,
    created_at: String,
    /// Set once the key is revoked.
    revoked_at: Option<String>,
}

impl From<ApiKeyInfo> for ApiKeyResponse {
    fn from(k: ApiKeyInfo) -> Self {
        ApiKeyResponse {
            id: k.id,
            prefix: k.prefix,
            scopes: k.scopes,
            label: k.label,
            user_id: k.user_id,
            created_at: crate::rfc3339_ms(k.created_at_ms),
            revoked_at: k.revoked_at_ms.map(crate::rfc3339_ms),
        }
    }
}

/// A new key, with its secret: shown this once and never again.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedKeyResponse {
    /// Send as `Authorization: Bearer <api_key>`.
    api_key: String,
    #[serde(flatten)]
    key: ApiKeyResponse,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct KeyListResponse {
    keys: Vec<ApiKeyResponse>,
}

/// Creates an API key for the caller's tenant (admin scope).
///
/// A key may only create keys whose scopes it holds itself: 403 otherwise (admin does not imply
/// `read_clear`).
#[utoipa::path(post, path = "/api/v1/tenant/keys", tag = "tenant", security(("api_key" = [])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, body = CreatedKeyResponse, headers(("location" = String, description = "The new key's URL"))),
        (status = 400, description = "Malformed body or invalid field", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 413, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let issued = crate::api_keys::create(
        &state,
        &auth.0,
        crate::api_keys::KeyRequest {
            scopes: body.scopes.into_iter().collect(),
            label: body.label.as_deref(),
            user_id: body.user_id.as_deref(),
        },
    )
    .await?;
    let location = format!("/api/v1/tenant/keys/{}", issued.info.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(CreatedKeyResponse {
            api_key: issued.secret,
            key: issued.info.into(),
        }),
    ))
}

/// Lists the caller's tenant's keys, newest first, revoked ones included (admin scope).
#[utoipa::path(get, path = "/api/v1/tenant/keys", tag = "tenant", security(("api_key" = [])),
    responses(
        (status = 200, body = KeyListResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<KeyListResponse>, ApiError> {
    let keys = crate::api_keys::list(&state, &auth.0).await?;
    Ok(axum::Json(KeyListResponse {
        keys: keys.into_iter().map(Into::into).collect(),
    }))
}

/// One of the caller's tenant's keys (admin scope). Another tenant's key is 404.
#[utoipa::path(get, path = "/api/v1/tenant/keys/{key_id}", tag = "tenant", security(("api_key" = [])),
    params(("key_id" = String, Path, description = "The key's id (`key_…`)")),
    responses(
        (status = 200, body = ApiKeyResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 410, description = "The key was revoked (`revoked_at`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn get_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(key_id): Path<String>,
) -> Result<axum::Json<ApiKeyResponse>, ApiError> {
    auth.require(Scope::Admin)?;
    let key = state
        .store()
        .api_key(auth.tenant_id(), &key_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no API key '{key_id}' in this tenant")))?;
    // A revoked key is deleted as far as this resource goes (DELETE revoked it); the key list
    // keeps showing it, with `revoked_at`, for the record.
    if let Some(revoked_at) = key.revoked_at_ms {
        return Err(ApiError::new(
            ProblemKind::Gone,
            format!("API key '{key_id}' was revoked; GET /api/v1/tenant/keys still lists it"),
        )
        .with("revoked_at", crate::rfc3339_ms(revoked_at)));
    }
    Ok(axum::Json(key.into()))
}

/// Revokes one of the caller's tenant's keys (admin scope); it stops working at once on this
/// server. Revoking an already revoked key is harmless. Another tenant's key is 404. The
/// tenant's last active admin key is refused with 409 `last_admin_key` (the caller's own key
/// included): create another admin key first.
#[utoipa::path(delete, path = "/api/v1/tenant/keys/{key_id}", tag = "tenant", security(("api_key" = [])),
    params(("key_id" = String, Path, description = "The key's id (`key_…`)")),
    responses(
        (status = 200, description = "The key, now revoked", body = ApiKeyResponse),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 409, description = "The tenant's last active admin key (`last_admin_key`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(key_id): Path<String>,
) -> Result<axum::Json<ApiKeyResponse>, ApiError> {
    let key = crate::api_keys::revoke(&state, &auth.0, &key_id).await?;
    Ok(axum::Json(key.into()))
}
