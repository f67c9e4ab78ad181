//! Every route, one module per area. Routes are only ever added through utoipa's `routes!`, so a
//! route cannot exist without its OpenAPI description (a test in `tests/openapi.rs` checks both
//! directions).

mod platform;
mod tenant;
mod weber;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The routes with their documentation, before state and middleware are attached.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(platform::health))
        .routes(routes!(platform::health_v1))
        .routes(routes!(platform::ready))
        .routes(routes!(platform::metrics))
        .routes(routes!(platform::openapi_json))
        .routes(routes!(tenant::current_tenant))
        .routes(routes!(tenant::list_keys, tenant::create_key))
        .routes(routes!(tenant::get_key, tenant::revoke_key))
        .routes(routes!(weber::get_profile))
        .routes(routes!(weber::batch_get))
        .routes(routes!(weber::segment_users))
        .routes(routes!(weber::segment_analytics))
}

/// The engine that owns a route, for the `service` metric label. Longest prefix wins; routes of
/// the shared serving layer are `platform`.
pub(crate) fn service_for(endpoint: &str) -> &'static str {
    const OWNERS: &[(&str, &str)] = &[
        ("/api/v1/users/", "weber"),
        ("/api/v1/weber-profiles", "weber"),
        ("/api/v1/segments/", "weber"),
        ("/api/v1/analytics/weber-segments", "weber"),
    ];
    OWNERS
        .iter()
        .filter(|(prefix, _)| endpoint.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or("platform", |(_, service)| service)
}
