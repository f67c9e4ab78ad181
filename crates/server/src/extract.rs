//! Extractors that turn bad input into problems instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use std::sync::Arc;

use store::{Principal, Scope};

use crate::context::RequestContext;
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// A JSON body. Wrong content type: 415. Too large: 413. Not JSON: 400 `malformed_json` with
/// line and column. Wrong type or missing field: 400 `invalid_field` naming the field path.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                ProblemKind::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ProblemKind::PayloadTooLarge,
            "the request body is larger than this server accepts",
        )
    } else {
        ApiError::new(
            ProblemKind::MalformedJson,
            format!("could not read the request body: {rejection}"),
        )
    }
}

/// Parses JSON, naming the offending field on type errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Two steps, because serde_json reports some type errors (a number where an enum belongs)
    // as syntax errors: first "is it JSON at all", then "does it fit", with the field's path.
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = field_of(&path, &inner.to_string());
        let detail = if field.is_empty() {
            inner.to_string()
        } else {
            format!("field `{field}`: {inner}")
        };
        ApiError::new(ProblemKind::InvalidField, detail).with("field", field)
    })
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        ProblemKind::MalformedJson,
        format!("the body is not valid JSON: {e}"),
    )
}

/// Query parameters. A bad one is 400 `invalid_parameter` with `parameter` naming it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                let parameter = field_of(&path, &inner);
                let detail = if parameter.is_empty() {
                    format!("invalid query: {inner}")
                } else {
                    format!("query parameter `{parameter}`: {inner}")
                };
                ApiError::invalid_parameter(&parameter, detail)
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// The dotted path of the field at fault; serde reports a missing field at its parent.
fn field_of(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (parent, missing) {
        ("", Some(name)) => name.to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        (parent, None) => parent.to_owned(),
    }
}

/// The flag environment a request is about: query parameter `environment`, else header
/// `X-Environment`, else `production`. 1-64 characters of `A-Z a-z 0-9 _ - .`; anything else is
/// 400 `invalid_parameter` naming `environment`.
pub struct FlagEnvironment(pub String);

/// The environment used when a request names none.
pub const DEFAULT_ENVIRONMENT: &str = "production";

impl<S: Send + Sync> FromRequestParts<S> for FlagEnvironment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let from_query = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "environment")
                .map(|(_, value)| value.into_owned())
        });
        let name = match from_query {
            Some(name) => name,
            None => match parts.headers.get("x-environment") {
                Some(value) => value
                    .to_str()
                    .map_err(|_| bad_environment("the X-Environment header is not ASCII"))?
                    .trim()
                    .to_owned(),
                None => DEFAULT_ENVIRONMENT.to_owned(),
            },
        };
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(bad_environment(&format!(
                "environment must be 1-64 characters of A-Z a-z 0-9 _ - . (got '{}')",
                name.chars().take(80).collect::<String>()
            )));
        }
        Ok(FlagEnvironment(name))
    }
}

fn bad_environment(detail: &str) -> ApiError {
    ApiError::invalid_parameter("environment", detail)
}

/// The caller, authenticated by `Authorization: Bearer <api key>`. Missing or bad key: 401.
///
/// Handlers that take `Auth` cannot run unauthenticated; scope checks are explicit with
/// [`Auth::require`].
pub struct Auth(pub Arc<Principal>);

impl Auth {
    /// 403 unless the key holds `scope` (or `admin`).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                ProblemKind::Forbidden,
                format!(
                    "this API key lacks the `{scope}` scope (it has: {})",
                    self.0.scopes
                ),
            )
            .with("required_scope", scope.as_str()))
        }
    }

    pub fn tenant_id(&self) -> &str {
        &self.0.tenant.id
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = match parts.extensions.get::<Authenticated>() {
            // The rate-limit middleware already looked the key up.
            Some(Authenticated(principal)) => principal.clone(),
            None => {
                let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
                    ApiError::unauthorized("missing `Authorization: Bearer <api key>` header")
                })?;
                let token = header.to_str().ok().and_then(token_of).ok_or_else(|| {
                    ApiError::unauthorized("the Authorization header must be `Bearer <api key>`")
                })?;
                authenticate(state, token).await?
            }
        };
        if let Some(ctx) = parts.extensions.get::<RequestContext>() {
            ctx.set_tenant(&principal.tenant.id);
        }
        Ok(Auth(principal))
    }
}

/// A principal authenticated earlier in the request (by the rate-limit middleware), kept in the
/// request extensions so the key is looked up once.
#[derive(Clone)]
pub(crate) struct Authenticated(pub Arc<Principal>);

/// The token of `Bearer <token>`.
fn token_of(value: &str) -> Option<&str> {
    value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// The bearer token of a request, if it has a well-formed `Authorization` header.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_of)
}

pub(crate) async fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<Arc<Principal>, ApiError> {
    let invalid =
        || ApiError::unauthorized("the API key is not valid (unknown, malformed or revoked)");
    if !store::secret::looks_like_key(token) {
        return Err(invalid());
    }
    let hash = store::secret::hash(token);
    if let Some(hit) = state.inner.auth_cache.get(&hash) {
        return Ok(hit);
    }
    let principal = state
        .store()
        .authenticate_hash(&hash)
        .await?
        .ok_or_else(invalid)?;
    let principal = Arc::new(principal);
    state.inner.auth_cache.insert(hash, principal.clone());
    Ok(principal)
}

/// Forgets every cached authentication, so a revocation takes effect at once on this replica.
pub(crate) fn forget_cached_keys(state: &AppState) {
    state.inner.auth_cache.invalidate_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Inner,
        kind: Option<Kind>,
    }
    #[derive(serde::Deserialize, Debug)]
    enum Kind {
        A,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn check(input: &str, kind: ProblemKind, field: Option<&str>, detail_has: &str) {
        let err = parse_json::<Body>(input.as_bytes()).unwrap_err();
        assert_eq!(err.kind, kind, "{input}: {err}");
        assert_eq!(
            err.extensions.get("field").and_then(|v| v.as_str()),
            field,
            "{input}"
        );
        assert!(err.detail.contains(detail_has), "{input}: {}", err.detail);
    }

    #[test]
    fn json_errors_name_what_is_wrong() {
        check("{", ProblemKind::MalformedJson, None, "EOF");
        check("not json", ProblemKind::MalformedJson, None, "line 1");
        check(
            r#"{"name":"a","inner":{"count":1}} x"#,
            ProblemKind::MalformedJson,
            None,
            "trailing",
        );
        check(
            r#"{"name":"a","inner":{"count":1},"kind":3}"#,
            ProblemKind::InvalidField,
            Some("kind"),
            "field `kind`",
        );
        check(
            r#"{"name":1,"inner":{"count":1}}"#,
            ProblemKind::InvalidField,
            Some("name"),
            "field `name`",
        );
        check(
            r#"{"name":"a","inner":{"count":"x"}}"#,
            ProblemKind::InvalidField,
            Some("inner.count"),
            "inner.count",
        );
        check(
            r#"{"name":"a","inner":{"count":-1}}"#,
            ProblemKind::InvalidField,
            Some("inner.count"),
            "invalid value",
        );
        check(
            r#"{"name":"a"}"#,
            ProblemKind::InvalidField,
            Some("inner"),
            "missing field `inner`",
        );
        check(
            r#"{"name":"a","inner":{}}"#,
            ProblemKind::InvalidField,
            Some("inner.count"),
            "missing field `count`",
        );
        assert!(parse_json::<Body>(br#"{"name":"a","inner":{"count":1}}"#).is_ok());
    }
}
