//! Signing in and out, the session cookie, and the checks every console request passes:
//! [`Session`] (who is signed in, from the cookie) and [`Submitted`] (a form post from one of
//! our own pages, carrying the session's CSRF token).
//!
//! The cookie holds a random secret; the store keeps only its SHA-256 and the API key it was
//! made from, so a session is exactly as strong as that key: revoking the key ends the session,
//! and the key's scopes decide what the console shows and allows. Sessions end after an idle
//! period and after a maximum lifetime ([`ConsoleSettings`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::Digest;
use store::{NewConsoleSession, Principal, Scope};

use super::{page, Chrome, ConsoleError};
use crate::state::AppState;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "signalbox_session";
/// The form field (and, for htmx requests, the `X-CSRF-Token` header) carrying the token.
pub(crate) const CSRF_FIELD: &str = "csrf";
const CSRF_HEADER: &str = "x-csrf-token";
/// A session is marked used at most this often, so reading pages costs no write each time.
const TOUCH_EVERY_MS: i64 = 60_000;

/// How console sessions behave.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// A session unused for this long is ended.
    pub idle_timeout: Duration,
    /// A session older than this is ended however busy it is.
    pub max_lifetime: Duration,
    /// Mark the cookie `Secure` (sent over HTTPS only). Turn on whenever the console is reached
    /// over TLS (directly or through a proxy); off by default so `http://127.0.0.1` works.
    pub secure_cookie: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            idle_timeout: Duration::from_secs(30 * 60),
            max_lifetime: Duration::from_secs(12 * 60 * 60),
            secure_cookie: false,
        }
    }
}

/// The signed-in person: the tenant and key they signed in with, and the session's CSRF token.
/// A handler that takes `Session` cannot run signed out: a page request is sent to the sign-in
/// page, anything else is answered 401.
pub(crate) struct Session {
    pub principal: Arc<Principal>,
    pub csrf: String,
    id_hash: String,
}

impl Session {
    /// 403 unless the key holds `scope` (admin holds read and write too).
    pub fn require(&self, scope: Scope) -> Result<(), ConsoleError> {
        if self.principal.scopes.allows(scope) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(format!(
                "this needs an API key with the `{scope}` scope; sign in with one to do it"
            )))
        }
    }

    /// Whether the key holds `scope`: templates hide controls the key could not use.
    pub fn can(&self, scope: Scope) -> bool {
        self.principal.scopes.allows(scope)
    }

    pub fn tenant_id(&self) -> &str {
        &self.principal.tenant.id
    }

    /// Ends this session now (its key was just revoked, say); pair with [`cleared_cookie`].
    pub async fn end(&self, state: &AppState) -> Result<(), ConsoleError> {
        state.store().delete_console_session(&self.id_hash).await?;
        Ok(())
    }

    /// The page frame (navigation, sign-out form, CSRF token) for a page of `section`.
    pub fn chrome(&self, section: &'static str, title: impl Into<String>) -> Chrome {
        Chrome::new(self, section, title.into())
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let signed_out = || ConsoleError::SignedOut {
            next: next_of(parts),
        };
        let Some(cookie) = cookie_value(&parts.headers) else {
            return Err(signed_out());
        };
        let id_hash = hash(cookie);
        let Some(record) = state.store().console_session(&id_hash).await? else {
            return Err(signed_out());
        };
        let settings = &state.config().console;
        let now = now_ms();
        let idle = now.saturating_sub(record.last_seen_ms);
        let age = now.saturating_sub(record.created_at_ms);
        if idle > millis(settings.idle_timeout) || age > millis(settings.max_lifetime) {
            state.store().delete_console_session(&id_hash).await?;
            return Err(signed_out());
        }
        if idle > TOUCH_EVERY_MS {
            state.store().touch_console_session(&id_hash, now).await?;
        }
        if let Some(ctx) = parts.extensions.get::<crate::context::RequestContext>() {
            ctx.set_tenant(&record.principal.tenant.id);
        }
        Ok(Session {
            principal: Arc::new(record.principal),
            csrf: record.csrf_token,
            id_hash,
        })
    }
}

/// A form posted from one of the console's own pages: the session, and the fields as `T`.
///
/// Refused with 403 when the browser says the post comes from another site (`Sec-Fetch-Site`,
/// `Origin`) or when the session's CSRF token is missing or wrong; with 422 naming the field
/// when the fields do not fit `T`.
pub(crate) struct Submitted<T> {
    pub session: Session,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Submitted<T> {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ConsoleError> {
        let (mut parts, body) = req.into_parts();
        same_origin(&parts.headers)?;
        let session = Session::from_request_parts(&mut parts, state).await?;
        let header_token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
        let req = Request::from_parts(parts, body);
        let bytes = form_body(
            content_type.as_ref(),
            axum::body::Bytes::from_request(req, state).await,
        )?;
        let fields: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
        let form_token = fields
            .iter()
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.clone());
        let presented = form_token.or(header_token).unwrap_or_default();
        if !constant_time_eq(presented.as_bytes(), session.csrf.as_bytes()) {
            return Err(ConsoleError::Forbidden(
                "this form is out of date or did not come from this console (CSRF token missing or wrong); reload the page and try again".to_owned(),
            ));
        }
        let form = parse_form(&bytes)?;
        Ok(Submitted { session, form })
    }
}

/// The body of a form post: 413 over the body limit, 422 when it is not a URL-encoded form
/// (a JSON body, say), so a stray client gets an HTML page naming the problem.
fn form_body(
    content_type: Option<&HeaderValue>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ConsoleError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ConsoleError::Api(crate::problem::ApiError::new(
                crate::problem::ProblemKind::PayloadTooLarge,
                "the form is larger than this server accepts",
            ))
        } else {
            ConsoleError::Invalid(format!("could not read the form: {e}"))
        }
    })?;
    let is_form = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !bytes.is_empty() && !is_form {
        return Err(ConsoleError::Invalid(
            "console forms are sent as application/x-www-form-urlencoded".to_owned(),
        ));
    }
    Ok(bytes)
}

/// Parses a URL-encoded form, naming the field that does not fit.
pub(crate) fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConsoleError> {
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(bytes));
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if field.is_empty() || field == "." {
            ConsoleError::Invalid(format!("the form cannot be read: {inner}"))
        } else {
            ConsoleError::Invalid(format!("field `{field}`: {inner}"))
        }
    })
}

/// 403 for a request a browser marks as coming from another site. Browsers send
/// `Sec-Fetch-Site` on every request and `Origin` on every POST; a client that sends neither
/// (curl) is not a browser another site can drive, and still needs the CSRF token.
fn same_origin(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let cross_site = || {
        ConsoleError::Forbidden(
            "cross-site form posts are refused: use the console's own pages".to_owned(),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Err(cross_site());
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        if host.is_none() || origin_host != host {
            return Err(cross_site());
        }
    }
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
struct SignInForm {
    api_key: String,
    next: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage<'a> {
    css: &'a str,
    next: String,
    error: Option<String>,
}

/// `GET /console/sign-in`: the form (or straight on, when already signed in).
pub(crate) async fn sign_in_page(
    signed_in: Result<Session, ConsoleError>,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> Result<Response, ConsoleError> {
    let next = safe_next(query.next.as_deref());
    if signed_in.is_ok() {
        return Ok(Redirect::to(&next).into_response());
    }
    page(
        StatusCode::OK,
        &SignInPage {
            css: super::assets::urls().css,
            next,
            error: None,
        },
    )
}

/// `POST /console/sign-in`: exchanges an API key for a session cookie. The key is checked like
/// a bearer token and never stored, echoed or logged.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ConsoleError> {
    // Login CSRF: another site must not sign a visitor in with the other site's key.
    same_origin(&headers)?;
    let body = form_body(headers.get(header::CONTENT_TYPE), body)?;
    let form: SignInForm = parse_form(&body)?;
    let next = safe_next(form.next.as_deref());
    let principal = match crate::extract::authenticate(&state, form.api_key.trim()).await {
        Ok(principal) => principal,
        Err(e) if e.kind.status() == StatusCode::UNAUTHORIZED => {
            return page(
                StatusCode::UNAUTHORIZED,
                &SignInPage {
                    css: super::assets::urls().css,
                    next,
                    error: Some(
                        "That API key is not valid: it is unknown, mistyped or revoked.".to_owned(),
                    ),
                },
            );
        }
        Err(e) => return Err(e.into()),
    };
    let secret = random_token();
    let csrf = random_token();
    let now = now_ms();
    let settings = &state.config().console;
    // Housekeeping on sign-in, the rare write: sessions nobody will use again go.
    state
        .store()
        .delete_expired_console_sessions(
            now - millis(settings.idle_timeout),
            now - millis(settings.max_lifetime),
        )
        .await?;
    state
        .store()
        .create_console_session(NewConsoleSession {
            id_hash: &hash(&secret),
            tenant_id: &principal.tenant.id,
            key_id: &principal.key_id,
            csrf_token: &csrf,
            now_ms: now,
        })
        .await?;
    tracing::info!(tenant_id = %principal.tenant.id, key_id = %principal.key_id, "console sign-in");
    let mut response = Redirect::to(&next).into_response();
    let cookie = format!(
        "{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        settings.max_lifetime.as_secs(),
        if settings.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /console/sign-out`: ends the session and clears the cookie.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    Submitted { session, .. }: Submitted<serde::de::IgnoredAny>,
) -> Result<Response, ConsoleError> {
    session.end(&state).await?;
    let mut response = Redirect::to("/console/sign-in").into_response();
    if let Some(value) = cleared_cookie(&state) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// A `Set-Cookie` value that makes the browser drop the session cookie.
pub(crate) fn cleared_cookie(state: &AppState) -> Option<HeaderValue> {
    let secure = if state.config().console.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    HeaderValue::from_str(&cookie).ok()
}

/// Where to go after signing in: a path of this console, never another site
/// (`//evil.example`, `https://…`, `/\evil`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with("/console")
                && !path.contains("//")
                && !path.contains('\\')
                && path.len() <= 512
                && path.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            path.to_owned()
        }
        _ => "/console".to_owned(),
    }
}

/// The page to come back to after signing in: this one, for a page request.
fn next_of(parts: &Parts) -> Option<String> {
    (parts.method == axum::http::Method::GET)
        .then(|| parts.uri.path_and_query().map(|pq| pq.as_str().to_owned()))
        .flatten()
}

fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// 256 random bits from the operating system, as hex.
fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_console() {
        for (given, expected) in [
            (None, "/console"),
            (
                Some("/console/flags?environment=production"),
                "/console/flags?environment=production",
            ),
            (Some("//evil.example/console"), "/console"),
            (Some("/console//evil.example"), "/console"),
            (Some("https://evil.example/console"), "/console"),
            (Some("/console/\\evil"), "/console"),
            (Some("/api/v1/tenant"), "/console"),
            (Some("/console/a b"), "/console"),
        ] {
            assert_eq!(safe_next(given), expected, "{given:?}");
        }
    }

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let good = "a".repeat(64);
        for (header, expected) in [
            (format!("{COOKIE}={good}"), Some(good.as_str())),
            (
                format!("other=1; {COOKIE}={good}; x=y"),
                Some(good.as_str()),
            ),
            (format!("{COOKIE}=short"), None),
            (format!("{COOKIE}={}", "z".repeat(64)), None),
            ("other=1".to_owned(), None),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(&header).unwrap());
            assert_eq!(cookie_value(&headers), expected, "{header}");
        }
    }

    #[test]
    fn cross_site_posts_are_refused_and_same_site_ones_pass() {
        let check = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            same_origin(&headers).is_ok()
        };
        assert!(check(&[]));
        assert!(check(&[
            ("sec-fetch-site", "same-origin"),
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(!check(&[("sec-fetch-site", "cross-site")]));
        assert!(!check(&[("sec-fetch-site", "same-site")]));
        assert!(!check(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ]));
        assert!(!check(&[("origin", "null")]));
    }
}
