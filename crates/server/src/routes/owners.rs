//! Which engine owns which route, for the `service` metric label.

/// The engine that owns a route, for the `service` metric label. Longest prefix wins; routes of
/// the shared serving layer are `platform`.
pub(crate) fn service_for(endpoint: &str) -> &'static str {
    const OWNERS: &[(&str, &str)] = &[
        ("/api/v1/users/", "weber"),
        ("/api/v1/interactions", "weber"),
        ("/api/v1/weber-profiles", "weber"),
        ("/api/v1/segments/", "weber"),
        ("/api/v1/analytics/weber-segments", "weber"),
        ("/api/v1/forecast", "forecast"),
        ("/forecast", "forecast"),
        ("/api/v1/flags", "flags"),
        ("/api/v1/experiments", "flags"),
        ("/ofrep/", "flags"),
        ("/api/v1/llm/", "llm"),
        ("/v1/traces", "llm"),
        ("/api/v1/jobs", "jobs"),
    ];
    OWNERS
        .iter()
        .filter(|(prefix, _)| endpoint.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or("platform", |(_, service)| service)
}
