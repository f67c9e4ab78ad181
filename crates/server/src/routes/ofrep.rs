//! The OpenFeature Remote Evaluation Protocol (OFREP, open-feature/protocol
//! `service/openapi.yaml`): single and bulk evaluation and the provider configuration, so that
//! OpenFeature SDKs with an OFREP provider work against signalbox unchanged.
//!
//! Read scope; the environment comes from `X-Environment` (or `?environment=`), default
//! `production`. Errors are problem+json documents that also carry OFREP's members (`key`,
//! `errorCode`, `errorDetails`), so both an OFREP provider and a problem-aware client can read
//! them. `metadata` explains each answer: the targeting rule that matched (`rule`), the raw
//! rollout bucket (`bucket`, 0..9999) and what disabled a flag (`disabled_by`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flags::{ErrorCode, Evaluation, EvaluationContext, FlagSet, Reason};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::Scope;
use utoipa::ToSchema;

use crate::extract::{Auth, FlagEnvironment};
use crate::feature_flags::{clock_ms, error_details, reason_name};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// The OFREP error code of a failed evaluation, as the protocol spells it.
fn error_code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
        ErrorCode::ParseError => "PARSE_ERROR",
        ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
        ErrorCode::InvalidContext => "INVALID_CONTEXT",
        ErrorCode::General => "GENERAL",
    }
}

/// OFREP's evaluation request: the context, optional (an empty body is an empty context).
/// No other member is accepted.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct EvaluationRequest {
    /// `targetingKey` (string) and any attributes: strings, numbers, booleans, lists of those,
    /// or objects (flattened to dotted names, `user.plan`). `null` members count as absent.
    #[schema(schema_with = context_schema)]
    context: Option<Value>,
}

/// The evaluation context: an open map of attributes, with `targetingKey` bounded.
fn context_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    let targeting_key = ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .max_length(Some(flags::MAX_TARGETING_KEY_BYTES))
        .pattern(Some("^[^\\x00-\\x1f\\x7f-\\x9f]*$"))
        .description(Some(
            "The user: at most 256 bytes, no control characters. Flags bucket by it unless \
             they name another attribute.",
        ));
    ObjectBuilder::new()
        // `null` is an empty context, as an absent one is.
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Object,
            Type::Null,
        ]))
        .property("targetingKey", targeting_key)
        .additional_properties(Some(AdditionalProperties::RefOr(attribute_schema(
            flags::MAX_CONTEXT_DEPTH,
        ))))
        .build()
}

/// An attribute of the context: a scalar, a list of scalars, or an object of attributes nested
/// at most `depth` deep (written out level by level, so the document states the limit).
fn attribute_schema(depth: usize) -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use utoipa::openapi::schema::{
        AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, SchemaType, Type,
    };
    let scalar = || {
        ObjectBuilder::new().schema_type(SchemaType::from_iter([
            Type::String,
            Type::Number,
            Type::Boolean,
            Type::Null,
        ]))
    };
    let mut any = AnyOfBuilder::new()
        .item(scalar())
        .item(ArrayBuilder::new().items(scalar()));
    if depth > 1 {
        any = any.item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::RefOr(attribute_schema(
                    depth - 1,
                )))),
        );
    }
    utoipa::openapi::RefOr::T(any.build().into())
}

/// Why a value was served, plus what explains it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvaluationMetadata<'a> {
    /// Id of the targeting rule that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    /// The rollout bucket of the bucketing key, 0..9999 (see docs/flags.md, Bucketing).
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<u16>,
    /// What disabled the flag, when `reason` is `DISABLED`: `kill_switch`, `status`, `expired`,
    /// `not_yet_enabled`, `environment`, `tenant`, `tier` or `prerequisite`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    disabled_by: Option<flags::DisabledBy>,
    /// The environment whose override (a variant or value for everyone) was served, when
    /// `reason` is `STATIC` because of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    environment_override: Option<&'a str>,
}

/// A successful evaluation, OFREP's `evaluationSuccess`. Its members never overlap a failure's
/// (`value` here, `errorCode` there), so a bulk item matches exactly one of the two.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvaluationSuccess<'a> {
    key: &'a str,
    /// The served value: boolean, string, number or object, as the flag's variant holds it.
    #[schema(value_type = serde_json::Value)]
    value: &'a Value,
    /// `STATIC`, `DEFAULT`, `TARGETING_MATCH`, `SPLIT` or `DISABLED`.
    reason: &'static str,
    /// Absent when an environment override serves a value of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    variant: Option<&'a str>,
    metadata: EvaluationMetadata<'a>,
}

/// A failed evaluation inside a bulk answer, OFREP's `evaluationFailure`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EvaluationFailure<'a> {
    key: &'a str,
    /// `TARGETING_KEY_MISSING`, `INVALID_CONTEXT` or `GENERAL`.
    error_code: &'static str,
    error_details: String,
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BulkItem<'a> {
    Success(EvaluationSuccess<'a>),
    Failure(EvaluationFailure<'a>),
}

/// Every flag of the environment, evaluated: OFREP's `bulkEvaluationSuccess`.
#[derive(Serialize, ToSchema)]
pub(crate) struct BulkEvaluation<'a> {
    flags: Vec<BulkItem<'a>>,
}

fn success<'a>(key: &'a str, e: &Evaluation<'a>) -> EvaluationSuccess<'a> {
    EvaluationSuccess {
        key,
        value: e.value,
        reason: reason_name(e.reason),
        variant: e.variant,
        metadata: EvaluationMetadata {
            rule: e.rule_id,
            bucket: e.bucket,
            disabled_by: e.disabled_by,
            environment_override: e.environment_override,
        },
    }
}

/// Why an OFREP request body was refused: the OFREP error code, the details, and the field at
/// fault when there is one.
type BodyRejection = (ErrorCode, String, Option<String>);

/// The evaluation context of an OFREP request body. The body is `{"context": {...}}`: other
/// top-level members and duplicated fields are refused (the context itself is an open map of
/// attributes, as OFREP defines it).
fn context_of(headers: &HeaderMap, body: &Bytes) -> Result<EvaluationContext, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(EvaluationContext::default());
    }
    crate::extract::require_json(headers)?;
    request_context(body).map_err(|(code, details, field)| {
        let error = ofrep_error(ProblemKind::FlagEvaluation, None, code, details);
        match field {
            Some(field) => error.with("field", field),
            None => error,
        }
    })
}

fn request_context(body: &Bytes) -> Result<EvaluationContext, BodyRejection> {
    let invalid =
        |details: String, field: Option<String>| (ErrorCode::InvalidContext, details, field);
    let request = crate::extract::parse_strict(body).map_err(|e| match e {
        crate::extract::StrictError::Duplicate(path) => invalid(
            format!("field `{path}` is given more than once; give each field once"),
            Some(path),
        ),
        crate::extract::StrictError::Json(e) => {
            invalid(format!("the body is not valid JSON: {e}"), None)
        }
    })?;
    let mut members = match request {
        // OFREP's body is optional; `null` is no body, as an empty one is.
        Value::Null => return Ok(EvaluationContext::default()),
        Value::Object(members) => members,
        _ => {
            return Err(invalid(
                "the body must be a JSON object `{\"context\": {...}}`".to_owned(),
                Some(crate::extract::BODY_FIELD.to_owned()),
            ))
        }
    };
    let context = members.remove("context").unwrap_or(Value::Null);
    if let Some(unknown) = members.keys().next() {
        return Err(invalid(
            format!(
                "unknown field `{}`: the body is `{{\"context\": {{...}}}}`",
                crate::problem::excerpt(unknown, 64)
            ),
            Some(unknown.clone()),
        ));
    }
    match context {
        Value::Null => Ok(EvaluationContext::default()),
        context => EvaluationContext::from_json(&context).map_err(|e| {
            let field = if e.path.is_empty() {
                "context".to_owned()
            } else {
                format!("context.{}", e.path)
            };
            invalid(e.to_string(), Some(field))
        }),
    }
}

fn ofrep_error(kind: ProblemKind, key: Option<&str>, code: ErrorCode, details: String) -> ApiError {
    let error = ApiError::new(kind, details.clone())
        .with("errorCode", error_code_name(code))
        .with("errorDetails", details);
    match key {
        Some(key) => error.with("key", key),
        None => error,
    }
}

/// What one request evaluates against; records exposures of what it served.
struct Served<'a> {
    state: &'a AppState,
    tenant_id: &'a str,
    environment: &'a str,
    set: &'a FlagSet,
    ctx: &'a EvaluationContext,
    now_ms: i64,
}

impl Served<'_> {
    /// Records an exposure when the flag tracks them and the answer was an assignment: a
    /// variant chosen by a split (reason `SPLIT`, flag-level or a rule's). Defaults, fixed
    /// rule variants, overrides and disabled answers are not randomised, so they would bias an
    /// experiment's comparison (docs/flags.md, "Exposures").
    fn exposed(&self, key: &str, e: &Evaluation<'_>) {
        let (Some(variant), Some(targeting_key)) = (e.variant, self.ctx.targeting_key.as_deref())
        else {
            return;
        };
        if e.reason != Reason::Split || !self.set.flag(key).is_some_and(|f| f.track_exposure) {
            return;
        }
        self.state.exposures().record(
            self.tenant_id,
            store::Exposure {
                environment: self.environment.to_owned(),
                flag_key: key.to_owned(),
                targeting_key: targeting_key.to_owned(),
                variant: variant.to_owned(),
                at_ms: self.now_ms,
            },
        );
    }
}

/// Evaluates one flag (OFREP core).
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags/{key}", tag = "flags", security(("api_key" = [])),
    params(
        ("key" = String, Path, description = "The flag key"),
        ("X-Environment" = Option<String>, Header, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]"),
    ),
    request_body(content = Option<EvaluationRequest>, description = "The evaluation context; an empty body is an empty context"),
    responses(
        (status = 200, body = EvaluationSuccess),
        (status = 400, description = "TARGETING_KEY_MISSING, INVALID_CONTEXT or GENERAL (problem with OFREP's `key`, `errorCode`, `errorDetails`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "FLAG_NOT_FOUND (problem with OFREP's `key`, `errorCode`, `errorDetails`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 429, description = "Rate limit reached; see `Retry-After`", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn evaluate_flag(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let ctx = context_of(&headers, &body).map_err(|e| {
        if e.kind == ProblemKind::FlagEvaluation {
            e.with("key", key.as_str())
        } else {
            e
        }
    })?;
    let snapshot = state
        .flags()
        .snapshot(state.store(), auth.tenant_id(), &environment)
        .await?;
    let now = clock_ms();
    let e = snapshot.set.evaluate(&key, &ctx, Some(&environment), now);
    state
        .metrics()
        .flags()
        .count_evaluation(reason_name(e.reason));
    state.evaluation_counts().count_answers(
        auth.tenant_id(),
        &environment,
        now,
        &snapshot.set,
        [(key.as_str(), e.variant)],
    );
    match e.error_code {
        Some(ErrorCode::FlagNotFound) => Err(ofrep_error(
            ProblemKind::NotFound,
            Some(&key),
            ErrorCode::FlagNotFound,
            error_details(&key, ErrorCode::FlagNotFound, &snapshot.set),
        )),
        Some(code) => Err(ofrep_error(
            ProblemKind::FlagEvaluation,
            Some(&key),
            code,
            error_details(&key, code, &snapshot.set),
        )),
        None => {
            Served {
                state: &state,
                tenant_id: auth.tenant_id(),
                environment: &environment,
                set: &snapshot.set,
                ctx: &ctx,
                now_ms: now,
            }
            .exposed(&key, &e);
            Ok(axum::Json(success(&key, &e)).into_response())
        }
    }
}

/// The strong ETag of a response body.
fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// Whether `If-None-Match` names `etag` (or is `*`). Weak and strong forms compare equal, as
/// RFC 9110 asks for If-None-Match.
pub(crate) fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// A JSON body with a strong ETag, or 304 when the client already has it.
fn with_etag(headers: &HeaderMap, body: Vec<u8>) -> Response {
    let etag = etag_of(&body);
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if none_match(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag_value),
        ],
        body,
    )
        .into_response()
}

/// Evaluates every flag of the environment (OFREP core). The ETag covers the answer itself, so
/// it changes exactly when some flag's value for this context changes (a definition change, or
/// a schedule moving on), and `If-None-Match` then gets 304.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags", tag = "flags", security(("api_key" = [])),
    params(
        ("X-Environment" = Option<String>, Header, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "The environment [default: production]"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of an earlier answer; 304 if it is still the answer"),
    ),
    request_body(content = Option<EvaluationRequest>, description = "The evaluation context; an empty body is an empty context"),
    responses(
        (status = 200, body = BulkEvaluation, headers(("etag" = String, description = "Strong validator of this answer"))),
        (status = 304, description = "The answer is unchanged"),
        (status = 400, description = "INVALID_CONTEXT (problem with OFREP's `errorCode`, `errorDetails`)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 429, description = "Rate limit reached; see `Retry-After`", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn evaluate_flags(
    State(state): State<AppState>,
    auth: Auth,
    FlagEnvironment(environment): FlagEnvironment,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let ctx = context_of(&headers, &body)?;
    let snapshot = state
        .flags()
        .snapshot(state.store(), auth.tenant_id(), &environment)
        .await?;
    let now = clock_ms();
    let set = &snapshot.set;
    let metrics = state.metrics().flags();
    let served = Served {
        state: &state,
        tenant_id: auth.tenant_id(),
        environment: &environment,
        set,
        ctx: &ctx,
        now_ms: now,
    };
    let evaluations = set.evaluate_all(&ctx, Some(&environment), now);
    state.evaluation_counts().count_answers(
        auth.tenant_id(),
        &environment,
        now,
        set,
        evaluations.iter().map(|(key, e)| (*key, e.variant)),
    );
    let flags = evaluations
        .into_iter()
        .map(|(key, e)| {
            metrics.count_evaluation(reason_name(e.reason));
            match e.error_code {
                Some(code) => BulkItem::Failure(EvaluationFailure {
                    key,
                    error_code: error_code_name(code),
                    error_details: error_details(key, code, set),
                }),
                None => {
                    served.exposed(key, &e);
                    BulkItem::Success(success(key, &e))
                }
            }
        })
        .collect();
    let body = serde_json::to_vec(&BulkEvaluation { flags }).map_err(|_| ApiError::internal())?;
    Ok(with_etag(&headers, body))
}

/// OFREP's provider configuration.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProviderConfiguration {
    /// `signalbox`.
    name: &'static str,
    #[schema(value_type = Object)]
    capabilities: Value,
}

/// Tells OFREP providers how to use this server: polling for bulk changes (at most once a
/// second) and the value types served (OFREP extension).
#[utoipa::path(get, path = "/ofrep/v1/configuration", tag = "flags", security(("api_key" = [])),
    params(
        ("If-None-Match" = Option<String>, Header, description = "The ETag of an earlier answer"),
    ),
    responses(
        (status = 200, body = ProviderConfiguration, headers(("etag" = String, description = "Strong validator of this answer"))),
        (status = 304, description = "The configuration is unchanged"),
        (status = 401, content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the read scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn configuration(auth: Auth, headers: HeaderMap) -> Result<Response, ApiError> {
    auth.require(Scope::Read)?;
    let config = ProviderConfiguration {
        name: "signalbox",
        capabilities: serde_json::json!({
            "cacheInvalidation": {"polling": {"enabled": true, "minPollingIntervalMs": 1000}},
            "flagEvaluation": {"supportedTypes": ["boolean", "string", "int", "float", "object"]},
        }),
    };
    let body = serde_json::to_vec(&config).map_err(|_| ApiError::internal())?;
    Ok(with_etag(&headers, body))
}
