//! The OpenAPI 3.1 document: the base (info, security scheme, shared schemas) plus whatever the
//! routes declare through `#[utoipa::path]`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "signalbox",
        description = "Self-hosted, multi-tenant signal platform. Every error is RFC 9457 \
            application/problem+json with a stable `type` (urn:signalbox:problem:<code>).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerKey),
    components(schemas(Problem, ScopeName, TierName)),
    tags(
        (name = "platform", description = "Health, readiness, metrics, API description"),
        (name = "tenant", description = "The caller's tenant and its API keys"),
        (name = "weber", description = "Weber sensitivity profiles and segments (seed 000)"),
        (name = "forecast", description = "Analog-ensemble weather forecasts and their diagnostics (seed 001)"),
        (name = "flags", description = "Feature flags: OFREP evaluation, the admin API with audit and change stream, experiments (seed 002)"),
        (name = "experiments", description = "A/B experiments on flag variants: lifecycle, metric events, results (seed 002)"),
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
