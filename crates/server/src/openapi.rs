//! The OpenAPI 3.1 document: the base (info, security scheme, shared schemas) plus whatever the
//! routes declare through `#[utoipa::path]`.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "signalbox",
        description = "Self-hosted, multi-tenant signal platform. Every error is RFC 9457 \
            application/problem+json with a stable `type` (urn:signalbox:problem:<code>). \
            GET answers carry a strong `ETag` (send it back in `If-None-Match` for a 304) and a \
            `Cache-Control` policy per route; answers of 500 bytes or more are compressed \
            (gzip, br, zstd) when `Accept-Encoding` allows, each encoding under its own ETag. \
            Tenant routes are rate limited (docs/limits.md): every answer carries the IETF \
            `RateLimit-Policy` and `RateLimit` fields, a refusal is a 429 problem with \
            `Retry-After`, and an optional `X-User-Id` header names the end user for per-user \
            rules when the key may assert users (`assert_user` or `admin` scope; a key bound to a \
            user is always counted as that user). A route answering more cheaply under a \
            `degrade` rule says so in `Signalbox-Degraded`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerKey),
    components(schemas(
        Problem,
        ScopeName,
        TierName,
        crate::routes::flag_schema::FlagRuleGroup,
        crate::routes::flag_schema::AllGroup,
        crate::routes::flag_schema::AnyGroup,
        crate::routes::flag_schema::NoneGroup,
        crate::routes::flag_schema::FlagCondition,
    )),
    tags(
        (name = "platform", description = "Health, readiness, metrics, API description"),
        (name = "tenant", description = "The caller's tenant and its API keys"),
        (name = "weber", description = "Weber sensitivity profiles and segments (seed 000)"),
        (name = "forecast", description = "Analog-ensemble weather forecasts and their diagnostics (seed 001)"),
        (name = "flags", description = "Feature flags: OFREP evaluation, the admin API with audit and change stream, experiments (seed 002)"),
        (name = "experiments", description = "A/B experiments on flag variants: lifecycle, metric events, results (seed 002)"),
        (name = "jobs", description = "Background jobs: enqueue built-in jobs by name (202 and the job's URL), follow, cancel, retry and purge them, queue statistics, recurring schedules (seed 002)"),
        (name = "feedback", description = "Feedback engine (seed 004): ingest feedback items per processing tier, PII findings and redacted text, sentiment, toxicity, policy alignment and its trace, clear text under the read_clear scope, per-tenant configuration, data-key rotation"),
        (name = "audit", description = "The tenant's tamper-evident audit log: signed checkpoints for witnesses, the public key, records, inclusion and consistency proofs (issue 17)"),
        (name = "llm", description = "LLM and chatbot observability: OTLP/HTTP GenAI traces, chatbot events, usage, conversation timelines, budgets, prices, the tenant's own metrics (seed 003)"),
    )
)]
struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sbx_<48 hex digits>")
                    .description(Some(
                        "An API key from `signalbox tenants create` or POST /api/v1/tenant/keys",
                    ))
                    .build(),
            ),
        );
    }
}

/// An RFC 9457 problem, as every error is answered.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Problem {
    /// `urn:signalbox:problem:<code>`; stable, one per kind of error.
    r#type: String,
    title: String,
    status: u16,
    /// What went wrong this time, naming the field or parameter at fault.
    detail: String,
    /// The request path.
    instance: String,
    /// The `x-request-id` of the request, to find its log lines.
    request_id: String,
    /// The field at fault, for `invalid_field`.
    field: Option<String>,
}

/// An API key scope.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum ScopeName {
    Read,
    Write,
    Admin,
    #[schema(rename = "assert_user")]
    AssertUser,
    #[schema(rename = "read_clear")]
    ReadClear,
}

/// A subscription tier.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum TierName {
    Free,
    Starter,
    Professional,
    Business,
    Enterprise,
}

pub(crate) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The name of the shared `304 Not Modified` response in `components.responses`.
const NOT_MODIFIED: &str = "NotModified";

/// Describes what the HTTP caching layers (`http_cache.rs`) add to every GET: a `304` answer and
/// the `ETag` header of the 200. They work on every route at once, so the routes' own
/// descriptions do not repeat them; this fills them in on the assembled document. Operations
/// that already describe their own 304 or ETag (OFREP's) are left as they are, and event streams
/// get neither: they carry no validator.
pub(crate) fn describe_caching(document: &mut utoipa::openapi::OpenApi) {
    let mut any = false;
    for item in document.paths.paths.values_mut() {
        let Some(get) = item.get.as_mut() else {
            continue;
        };
        let responses = &mut get.responses.responses;
        let Some(RefOr::T(ok)) = responses.get_mut("200") else {
            continue;
        };
        if ok
            .content
            .keys()
            .any(|c| c.starts_with("text/event-stream"))
        {
            continue;
        }
        if !ok.headers.keys().any(|h| h.eq_ignore_ascii_case("etag")) {
            let etag = HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(
                    "Strong validator of this answer; send it back in If-None-Match",
                ))
                .build();
            ok.headers.insert("etag".to_owned(), etag);
        }
        responses
            .entry("304".to_owned())
            .or_insert_with(|| Ref::from_response_name(NOT_MODIFIED).into());
        any = true;
    }
    if any {
        let not_modified = ResponseBuilder::new()
            .description(
                "Not modified: If-None-Match names the current ETag. No body; ETag, \
                 Cache-Control and Vary are those of the 200.",
            )
            .build();
        document
            .components
            .get_or_insert_with(Default::default)
            .responses
            .insert(NOT_MODIFIED.to_owned(), not_modified.into());
    }
}

const RATE_LIMITED: &str = "RateLimited";

/// Adds the 429 answer of the rate-limit middleware to every operation it guards (every route
/// but the probes, the scrape and this document), as one shared response.
pub(crate) fn describe_rate_limits(document: &mut utoipa::openapi::OpenApi) {
    let mut any = false;
    for (path, item) in document.paths.paths.iter_mut() {
        if crate::rate_limit::exempt(path) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .entry("429".to_owned())
                .or_insert_with(|| Ref::from_response_name(RATE_LIMITED).into());
            any = true;
        }
    }
    if !any {
        return;
    }
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build()
    };
    let rate_limited = ResponseBuilder::new()
        .description(
            "Too many requests: a rate-limit rule refused this request (problem `rate_limited`, \
             with `rule` and `retry_after_secs`). Wait `Retry-After` seconds.",
        )
        .header(
            "retry-after",
            header("Seconds until the request would be admitted"),
        )
        .header(
            "ratelimit-policy",
            header("The quotas that applied: `\"rule\";q=QUOTA;w=WINDOW_SECS`, comma-separated"),
        )
        .header(
            "ratelimit",
            header("What is left: `\"rule\";r=REMAINING;t=SECS_TO_RESET`, comma-separated"),
        )
        .content(
            crate::problem::PROBLEM_JSON,
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    document
        .components
        .get_or_insert_with(Default::default)
        .responses
        .insert(RATE_LIMITED.to_owned(), rate_limited.into());
}

/// A problem+json response with `description`, for `components.responses`.
fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::problem::PROBLEM_JSON,
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// Adds the answers that layers and extractors shared by many routes can give, so that every
/// operation documents every status it can answer (schemathesis checks this; see
/// docs/errors.md, "The contract"):
///
/// - every operation: 414 (the request line is over the URI limit) and 503 (the handler
///   timeout, or a dependency down);
/// - operations with a request body: 400 (malformed JSON, a duplicated field, a field of the
///   wrong type), 413 (over the body limit) and 415 (not JSON);
/// - operations with parameters: 400 (a parameter breaks its schema);
/// - operations that need an API key: 401.
///
/// A route's own description of one of these statuses, if it has one, is kept.
pub(crate) fn describe_common_errors(document: &mut utoipa::openapi::OpenApi) {
    const SHARED: [(&str, &str, &str); 6] = [
        ("400", "BadRequest", "The request breaks this document: malformed JSON, a field given twice, a field or parameter of the wrong type or outside its bounds (`field` or `parameter` names it)"),
        ("401", "Unauthorized", "Missing or invalid API key"),
        ("413", "PayloadTooLarge", "The body is over the body limit (`--body-limit-bytes`)"),
        ("414", "UriTooLong", "The request target (path and query) is over the URI limit"),
        ("415", "UnsupportedMediaType", "The body is not sent as JSON (`Content-Type: application/json`)"),
        ("503", "Unavailable", "The request did not finish within the handler timeout (`timeout`), or a dependency is down (`unavailable`); see `Retry-After`"),
    ];
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ];
        for operation in operations.into_iter().flatten() {
            // An optional parameter is absent or a value, never `null`: utoipa writes
            // `Option<String>` as `["string", "null"]`, which would invite `If-Match: null`.
            for parameter in operation.parameters.iter_mut().flatten() {
                if let Some(RefOr::T(utoipa::openapi::Schema::Object(schema))) =
                    parameter.schema.as_mut()
                {
                    if let utoipa::openapi::schema::SchemaType::Array(types) = &schema.schema_type {
                        let types: Vec<Type> = types
                            .iter()
                            .filter(|t| **t != Type::Null)
                            .cloned()
                            .collect();
                        if let [only] = types.as_slice() {
                            schema.schema_type = only.clone().into();
                        }
                    }
                }
            }
            let has_body = operation.request_body.is_some();
            let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let mut wanted = vec!["414", "503"];
            if has_body {
                wanted.extend(["400", "413", "415"]);
            }
            if has_parameters {
                wanted.push("400");
            }
            if secured {
                wanted.push("401");
            }
            for status in wanted {
                let name = SHARED
                    .iter()
                    .find(|(s, _, _)| *s == status)
                    .map_or("", |(_, name, _)| *name);
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| Ref::from_response_name(name).into());
            }
        }
    }
    let responses = &mut document
        .components
        .get_or_insert_with(Default::default)
        .responses;
    for (_, name, description) in SHARED {
        responses.insert(name.to_owned(), problem_response(description).into());
    }
}
