//! Every route, one module per area. Routes are only ever added through utoipa's `routes!`, so a
//! route cannot exist without its OpenAPI description (a test in `tests/openapi.rs` checks both
//! directions).

mod audit;
mod experiments;
mod feedback;
mod feedback_migration;
mod feedback_reports;
pub(crate) mod flag_schema;
mod flag_usage;
mod flags;
mod forecast;
mod interactions;
pub(crate) mod jobs;
mod llm;
mod ofrep;
pub(crate) mod owners;
mod platform;
mod predictions;
mod privacy;
mod rollouts;
mod tenant;
mod weber;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The complete OpenAPI document: the base plus every route's description.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

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
        .routes(routes!(weber::update_profile))
        .routes(routes!(interactions::ingest))
        .routes(routes!(predictions::ingest_transactions))
        .routes(routes!(predictions::clv_prediction))
        .routes(routes!(predictions::churn_prediction))
        .routes(routes!(
            predictions::recommendations,
            predictions::recommendations_post
        ))
        .routes(routes!(predictions::current_model))
        .routes(routes!(predictions::refit))
        .routes(routes!(weber::batch_get))
        .routes(routes!(weber::segment_users))
        .routes(routes!(weber::segment_analytics))
        .routes(routes!(weber::calculations))
        .routes(routes!(weber::get_settings, weber::put_settings))
        .routes(routes!(weber::delete_user))
        .routes(routes!(forecast::forecast_seed))
        .routes(routes!(forecast::forecast))
        .routes(routes!(forecast::batch))
        .routes(routes!(forecast::diagnostics))
        .routes(routes!(forecast::catalogue))
        .routes(routes!(ofrep::evaluate_flag))
        .routes(routes!(ofrep::evaluate_flags))
        .routes(routes!(ofrep::configuration))
        .routes(routes!(flags::list_flags, flags::create_flag))
        .routes(routes!(
            flags::get_flag,
            flags::replace_flag,
            flags::delete_flag
        ))
        .routes(routes!(flags::kill_flag))
        .routes(routes!(rollouts::get_rollout, rollouts::put_rollout))
        .routes(routes!(rollouts::advance_rollout))
        .routes(routes!(rollouts::rollback_rollout))
        .routes(routes!(rollouts::abort_rollout))
        .routes(routes!(flags::flag_audit))
        .routes(routes!(flags::flag_stream))
        .routes(routes!(flag_usage::usage))
        .routes(routes!(flag_usage::stale))
        .routes(routes!(flag_usage::flag_usage))
        .routes(routes!(experiments::create, experiments::list))
        .routes(routes!(experiments::get))
        .routes(routes!(experiments::start))
        .routes(routes!(experiments::pause))
        .routes(routes!(experiments::resume))
        .routes(routes!(experiments::conclude))
        .routes(routes!(experiments::fail))
        .routes(routes!(experiments::events))
        .routes(routes!(experiments::void_event))
        .routes(routes!(experiments::results))
        .routes(routes!(llm::otlp_traces))
        .routes(routes!(llm::ingest_events))
        .routes(routes!(llm::usage))
        .routes(routes!(llm::conversation))
        .routes(routes!(llm::get_budget, llm::put_budget))
        .routes(routes!(llm::get_prices, llm::put_prices))
        .routes(routes!(llm::tenant_metrics))
        .routes(routes!(jobs::enqueue, jobs::list, jobs::purge))
        .routes(routes!(jobs::stats))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(jobs::list_schedules))
        .routes(routes!(
            jobs::get_schedule,
            jobs::put_schedule,
            jobs::delete_schedule
        ))
        .routes(routes!(jobs::recalculate_profiles))
        .routes(routes!(feedback::ingest, feedback::list))
        .routes(routes!(
            feedback_reports::list_reports,
            feedback_reports::create_report
        ))
        .routes(routes!(feedback_reports::get_report))
        .routes(routes!(feedback::get_config, feedback::put_config))
        .routes(routes!(feedback::rotate_keys))
        .routes(routes!(feedback::get, feedback::purge))
        .routes(routes!(feedback::trace))
        .routes(routes!(feedback::clear_text))
        .routes(routes!(
            feedback_migration::get_plan,
            feedback_migration::put_plan
        ))
        .routes(routes!(feedback_migration::start))
        .routes(routes!(feedback_migration::advance))
        .routes(routes!(feedback_migration::rollback))
        .routes(routes!(feedback_migration::abort))
        .routes(routes!(privacy::analytics))
        .routes(routes!(privacy::get_budget, privacy::put_budget))
        .routes(routes!(audit::checkpoint))
        .routes(routes!(audit::public_key))
        .routes(routes!(audit::records))
        .routes(routes!(audit::inclusion_proof))
        .routes(routes!(audit::consistency_proof))
}
