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
        require_json(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: an empty body (whatever its headers) or JSON `null` is `None`;
/// anything else must be JSON as for [`ApiJson`] (415 for another content type).
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        require_json(&headers)?;
        if parse_value(&bytes)?.is_null() {
            return Ok(OptionalJson(None));
        }
        parse_json(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

/// 415 unless `Content-Type` is `application/json` or `application/*+json`.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            ProblemKind::UnsupportedMediaType,
            "send the body as JSON with `Content-Type: application/json`",
        ))
    }
}

/// How a batch body is framed, from its `Content-Type`: a JSON array or NDJSON; anything else
/// is a 415 naming what the route takes (`items`: "events", "purchases", ...).
pub(crate) fn batch_framing(
    headers: &axum::http::HeaderMap,
    items: &str,
) -> Result<crate::ingest::Framing, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    crate::ingest::Framing::from_content_type(content_type).ok_or_else(|| {
        ApiError::new(
            ProblemKind::UnsupportedMediaType,
            format!(
                "send {items} as a JSON array (Content-Type: application/json) or NDJSON \
                 (Content-Type: application/x-ndjson)"
            ),
        )
    })
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
    // as syntax errors: first "is it JSON at all" (and is every object's field given once),
    // then "does it fit", with the field's path.
    let value = parse_value(bytes)?;
    // Every JSON body is an object; serde would otherwise read a struct from an array too.
    if !value.is_object() {
        return Err(not_an_object());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = field_of(&path, &inner.to_string());
        if field.is_empty() {
            // The body as a whole has the wrong type (an array where an object belongs).
            return ApiError::new(
                ProblemKind::InvalidField,
                format!("the request body must be a JSON object: {inner}"),
            )
            .with("field", BODY_FIELD);
        }
        ApiError::new(
            ProblemKind::InvalidField,
            format!("field `{field}`: {inner}"),
        )
        .with("field", field)
    })
}

/// The `field` a problem names when the body as a whole is at fault.
pub const BODY_FIELD: &str = "body";

/// 400 for a body that is JSON but not an object (`null`, a number, an array...).
pub fn not_an_object() -> ApiError {
    ApiError::invalid_field(BODY_FIELD, "the request body must be a JSON object")
}

/// Parses a JSON document into a value, refusing any object that gives a field more than once.
///
/// serde_json keeps the last of duplicated fields; a gateway or log pipeline in front of this
/// server may keep the first, and then the two would act on different requests (a key created
/// with `"scopes":["read"], …, "scopes":["admin"]` would look read-only to one and be admin to
/// the other). So every JSON body is parsed through here: a duplicate is 400 `invalid_field`
/// naming its path (`rules[0].variant`), anything that is not JSON is 400 `malformed_json`.
pub fn parse_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    parse_strict(bytes).map_err(|e| match e {
        StrictError::Duplicate(path) => duplicate_field(&path),
        StrictError::Json(e) => malformed(&e),
    })
}

/// 400 naming a field given twice in one object.
pub fn duplicate_field(path: &str) -> ApiError {
    ApiError::invalid_field(
        path,
        format!("field `{path}` is given more than once; give each field once"),
    )
}

/// Why [`parse_strict`] refused a document.
#[derive(Debug)]
pub enum StrictError {
    /// A field appears twice in one object: its path.
    Duplicate(String),
    /// Not JSON (syntax, trailing characters, nesting too deep).
    Json(serde_json::Error),
}

/// [`parse_value`] without the problem: for bodies whose errors are reported differently
/// (NDJSON lines, OFREP's error codes).
pub fn parse_strict(bytes: &[u8]) -> Result<serde_json::Value, StrictError> {
    let duplicate = std::cell::RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde::de::DeserializeSeed::deserialize(
        Strict {
            place: Place::Root,
            duplicate: &duplicate,
        },
        &mut de,
    )
    .and_then(|value| de.end().map(|()| value));
    match (parsed, duplicate.into_inner()) {
        (_, Some(path)) => Err(StrictError::Duplicate(path)),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictError::Json(e)),
    }
}

/// Where a value sits in the document, kept on the stack while parsing and spelled out only
/// for an error, the way `serde_path_to_error` spells paths (`a.b[2].c`).
#[derive(Clone, Copy)]
enum Place<'a> {
    Root,
    Key(&'a Place<'a>, &'a str),
    Index(&'a Place<'a>, usize),
}

impl Place<'_> {
    fn path(&self) -> String {
        match self {
            Place::Root => String::new(),
            Place::Key(parent, key) => match parent.path() {
                p if p.is_empty() => (*key).to_owned(),
                p => format!("{p}.{key}"),
            },
            Place::Index(parent, i) => format!("{}[{i}]", parent.path()),
        }
    }
}

/// Builds a `serde_json::Value` like its own `Deserialize`, except that a field given twice
/// is an error (its path is left in `duplicate`).
struct Strict<'a, 'd> {
    place: Place<'a>,
    duplicate: &'d std::cell::RefCell<Option<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Strict<'_, '_> {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict<'_, '_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // JSON has one number type: `2512.0` is the integer 2512 (JSON Schema agrees), so an
        // integral value is kept as an integer and fits integer fields.
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
        if v.fract() == 0.0 && v.abs() < EXACT {
            return Ok((v as i64).into());
        }
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            let seed = Strict {
                place: Place::Index(&self.place, items.len()),
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(serde_json::Value::Array(items)),
            }
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let place = Place::Key(&self.place, &key);
            if object.contains_key(&key) {
                let path = place.path();
                let error = serde::de::Error::custom(format!("duplicate field `{path}`"));
                *self.duplicate.borrow_mut() = Some(path);
                return Err(error);
            }
            let value = map.next_value_seed(Strict {
                place,
                duplicate: self.duplicate,
            })?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
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
        check_environment(name).map(FlagEnvironment)
    }
}

/// A flag environment's name as given, if it is one: 1-64 characters of `A-Za-z0-9_.-`;
/// otherwise 400 naming `environment`.
pub fn check_environment(name: String) -> Result<String, ApiError> {
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
    Ok(name)
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

    #[test]
    fn a_field_given_twice_is_named_by_its_path() {
        for (input, path) in [
            (r#"{"a":1,"a":2}"#, "a"),
            (r#"{"a":{"b":1,"c":2,"b":3}}"#, "a.b"),
            (r#"[{"x":1},{"y":[{"z":1,"z":1}]}]"#, "[1].y[0].z"),
            (r#"{"a":[[{"k":1,"k":null}]]}"#, "a[0][0].k"),
        ] {
            match parse_strict(input.as_bytes()) {
                Err(StrictError::Duplicate(got)) => assert_eq!(got, path, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        // The same name in different objects is fine, and values come through unchanged.
        let value =
            parse_strict(br#"{"a":{"k":1},"b":{"k":[1.5,"s",null,true]},"c":2.0}"#).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a":{"k":1},"b":{"k":[1.5,"s",null,true]},"c":2})
        );
        assert!(matches!(
            parse_strict(b"{\"a\":1} x"),
            Err(StrictError::Json(_))
        ));
        let err =
            parse_json::<Body>(br#"{"name":"a","name":"b","inner":{"count":1}}"#).unwrap_err();
        assert_eq!(err.kind, ProblemKind::InvalidField);
        assert_eq!(err.extensions["field"], "name");
        let err = parse_json::<Body>(b"null").unwrap_err();
        assert_eq!(err.extensions["field"], BODY_FIELD);
    }
}
