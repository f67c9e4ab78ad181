//! Experiments: the list, and one experiment's definition, lifecycle actions and results.
//!
//! Reads need the read scope and lifecycle actions the admin scope, as the API's routes do.
//! Actions and results come from [`crate::experiments`], the code behind the API's lifecycle
//! routes and its `/results`, so the page shows exactly what the API answers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use flags::experiment::{Comparison, Experiment, Metric, MetricKind};
use serde::Deserialize;
use store::Scope;

use super::charts::{self, IntervalRow};
use super::{page, Chrome, ConsoleError, Section, Session, Submitted};
use crate::experiments::{self as service, LifecycleAction};
use crate::problem::ProblemKind;
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "experiments",
    title: "Experiments",
    path: "/console/experiments",
    needs: Scope::Read,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/experiments", get(list))
        .route("/console/experiments/{id}", get(detail))
        .route("/console/experiments/{id}/{action}", post(act))
}

fn detail_path(key: &str) -> String {
    format!(
        "/console/experiments/{}",
        form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
    )
}

fn rfc3339(ms: Option<i64>) -> String {
    ms.map(crate::rfc3339_ms).unwrap_or_default()
}

/// A number for a table: at most four decimals, no trailing zeros.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let text = format!("{x:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// A share as a percentage with at most two decimals.
fn pct(x: f64) -> String {
    let text = format!("{:.2}", x * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{}%", if text == "-0" { "0" } else { text })
}

fn p_value(p: f64) -> String {
    if p < 0.0001 {
        "< 0.0001".to_owned()
    } else {
        num(p)
    }
}

// ---- list ------------------------------------------------------------------------------------

struct ExperimentRow {
    key: String,
    href: String,
    flag: String,
    flag_href: String,
    environment: String,
    state: String,
    kind: &'static str,
    owner: String,
    tags: String,
    started_at: String,
    exposures: u64,
}

#[derive(askama::Template)]
#[template(path = "console/experiments.html")]
struct ListPage {
    chrome: Chrome,
    experiments: Vec<ExperimentRow>,
}

async fn list(State(state): State<AppState>, session: Session) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let tenant_id = session.tenant_id();
    let records = state.store().experiments(tenant_id).await?;
    let exposed = state.store().exposed_users_by_flag(tenant_id).await?;
    let mut experiments = Vec::with_capacity(records.len());
    for record in records {
        let e = service::decode(&record)?;
        let flag = e.spec.flag_key.clone();
        experiments.push(ExperimentRow {
            href: detail_path(&record.key),
            flag_href: flag_path(&record.environment, &flag),
            exposures: exposed
                .get(&(record.environment.clone(), flag.clone()))
                .copied()
                .unwrap_or(0),
            key: record.key,
            flag,
            environment: record.environment,
            state: service::state_name(e.state).to_owned(),
            kind: type_name(e.plan.experiment_type),
            owner: e.plan.owner.clone().unwrap_or_default(),
            tags: e.plan.tags.join(", "),
            started_at: rfc3339(e.started_at),
        });
    }
    page(
        StatusCode::OK,
        &ListPage {
            chrome: session.chrome(SECTION.id, "Experiments"),
            experiments,
        },
    )
}

fn type_name(t: flags::experiment::ExperimentType) -> &'static str {
    use flags::experiment::ExperimentType;
    match t {
        ExperimentType::AbTest => "A/B test",
        ExperimentType::Multivariate => "multivariate",
        ExperimentType::FeatureFlag => "feature flag",
        ExperimentType::SplitTest => "split test",
    }
}

fn flag_path(environment: &str, flag: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("/console/flags/{}/{}", enc(environment), enc(flag))
}

// ---- detail ----------------------------------------------------------------------------------

struct MetricLine {
    role: &'static str,
    key: String,
    kind: &'static str,
    goal: String,
    mde: String,
}

struct VariantLine {
    key: String,
    weight: u32,
    control: bool,
}

struct StatsRow {
    variant: String,
    n: u64,
    conversions: String,
    mean: String,
    variance: String,
}

struct ComparisonRow {
    variant: String,
    difference: String,
    difference_interval: String,
    lift: String,
    lift_interval: String,
    p_value: String,
    /// Holm-adjusted across the primary and secondary comparisons.
    p_value_adjusted: String,
    test: &'static str,
    significant: bool,
    improves: bool,
}

struct MetricTable {
    key: String,
    role: &'static str,
    conversion: bool,
    variants: Vec<StatsRow>,
    comparisons: Vec<ComparisonRow>,
}

struct GuardrailRow {
    metric: String,
    variant: String,
    degradation: String,
    failed: bool,
}

struct ResultsView {
    /// The primary metric's relative lift per treatment with its interval, as SVG.
    lift_chart: String,
    primary_metric: String,
    users: Vec<(String, u64)>,
    alpha: String,
    required_per_variant: u64,
    srm_mismatch: bool,
    srm_p: String,
    srm_statistic: String,
    metrics: Vec<MetricTable>,
    guardrails: Vec<GuardrailRow>,
    sequential: Vec<(String, String, bool)>,
    early_stopping: bool,
    recommendation: String,
    not_analysed: Vec<String>,
    computed_at: String,
}

#[derive(askama::Template)]
#[template(path = "console/experiment_detail.html")]
struct DetailPage {
    chrome: Chrome,
    key: String,
    base_path: String,
    flag_href: String,
    environment: String,
    experiment: Experiment,
    state: &'static str,
    created_at: String,
    started_at: String,
    paused_at: String,
    concluded_at: String,
    kind: &'static str,
    /// Owner, tags, traffic, audience, schedule and durations as (label, value) lines.
    plan: Vec<(&'static str, String)>,
    /// The running windows as (start, end or "running").
    windows: Vec<(String, String)>,
    variants: Vec<VariantLine>,
    metrics: Vec<MetricLine>,
    guardrails: Vec<String>,
    /// Lifecycle actions the state allows, shown only to a key that may take them.
    actions: Vec<&'static str>,
    results: Option<ResultsView>,
    /// Why there are no results yet.
    results_missing: Option<String>,
}

fn metric_line(role: &'static str, m: &Metric) -> MetricLine {
    MetricLine {
        role,
        key: m.key.clone(),
        kind: match m.kind {
            MetricKind::Conversion => "conversion",
            MetricKind::Value => "value",
        },
        goal: serde_json::to_value(m.goal)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        mde: num(m.minimum_detectable_effect),
    }
}

fn comparison_row(c: &Comparison) -> ComparisonRow {
    ComparisonRow {
        variant: c.variant.clone(),
        difference: num(c.difference.estimate),
        difference_interval: format!(
            "{} to {}",
            num(c.difference.ci_low),
            num(c.difference.ci_high)
        ),
        lift: c.relative_lift.map(|l| pct(l.lift)).unwrap_or_default(),
        lift_interval: c
            .relative_lift
            .map(|l| format!("{} to {}", pct(l.ci_low), pct(l.ci_high)))
            .unwrap_or_default(),
        p_value: p_value(c.p_value),
        p_value_adjusted: p_value(c.p_value_adjusted),
        test: match c.test {
            flags::experiment::TestKind::ChiSquare => "chi-square",
            flags::experiment::TestKind::WelchT => "Welch's t",
        },
        significant: c.significant,
        improves: c.improves,
    }
}

fn results_view(analysis: &service::Analysis) -> ResultsView {
    let spec = &analysis.experiment.spec;
    let results = &analysis.results;
    let mut metrics = Vec::new();
    let groups = [
        (
            "primary",
            std::slice::from_ref(&spec.primary_metric),
            &results.primary,
        ),
        (
            "secondary",
            spec.secondary_metrics.as_slice(),
            &results.secondary,
        ),
    ];
    for (role, defined, comparisons) in groups {
        for metric in defined {
            let mine: Vec<&Comparison> = comparisons
                .iter()
                .filter(|c| c.metric == metric.key)
                .collect();
            let conversion = metric.kind == MetricKind::Conversion;
            let stats_row = |variant: &str, s: &flags::stats::Summary| StatsRow {
                variant: variant.to_owned(),
                n: s.n,
                // A conversion metric's mean is the rate; rate times users is the count.
                conversions: if conversion {
                    format!("{}", (s.mean * s.n as f64).round())
                } else {
                    String::new()
                },
                mean: if conversion { pct(s.mean) } else { num(s.mean) },
                variance: num(s.variance),
            };
            let mut variants = Vec::new();
            if let Some(first) = mine.first() {
                variants.push(stats_row(&spec.control, &first.control));
            }
            variants.extend(mine.iter().map(|c| stats_row(&c.variant, &c.treatment)));
            metrics.push(MetricTable {
                key: metric.key.clone(),
                role,
                conversion,
                variants,
                comparisons: mine.iter().map(|c| comparison_row(c)).collect(),
            });
        }
    }
    let lift_rows: Vec<IntervalRow<'_>> = results
        .primary
        .iter()
        .filter_map(|c| {
            c.relative_lift.map(|l| IntervalRow {
                label: c.variant.as_str(),
                estimate: l.lift * 100.0,
                low: l.ci_low * 100.0,
                high: l.ci_high * 100.0,
            })
        })
        .collect();
    let lift_chart = charts::interval_chart(
        &format!(
            "Relative lift of {} against {}, with its interval",
            spec.primary_metric.key, spec.control
        ),
        "lift (%)",
        &lift_rows,
        0.0,
    );
    ResultsView {
        lift_chart,
        primary_metric: spec.primary_metric.key.clone(),
        // In the definition's order, control first as the experiment lists them.
        users: spec
            .variants
            .iter()
            .map(|v| {
                let users = analysis.data.get(&v.key).map_or(0, |d| d.users);
                (v.key.clone(), users)
            })
            .collect(),
        alpha: num(spec.alpha),
        required_per_variant: results.required_per_variant,
        srm_mismatch: results.srm.mismatch,
        srm_p: p_value(results.srm.test.p_value),
        srm_statistic: num(results.srm.test.statistic),
        metrics,
        guardrails: results
            .guardrails
            .iter()
            .map(|g| GuardrailRow {
                metric: g.metric.clone(),
                variant: g.variant.clone(),
                degradation: pct(g.relative_degradation),
                failed: g.failed,
            })
            .collect(),
        sequential: results
            .sequential_p
            .iter()
            .map(|(v, p)| (v.clone(), p_value(*p), *p <= spec.alpha))
            .collect(),
        early_stopping: spec.early_stopping,
        recommendation: results.recommendation.to_string(),
        not_analysed: results
            .not_analysed
            .iter()
            .map(|n| format!("{} for {}: {}", n.metric, n.variant, n.reason))
            .collect(),
        computed_at: crate::rfc3339_ms(crate::feature_flags::clock_ms()),
    }
}

async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path(key): Path<String>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let tenant_id = session.tenant_id();
    let record = service::load(&state, tenant_id, &key).await?;
    let experiment = service::decode(&record)?;
    // Results exist once the data allows an analysis; before that the page says what is
    // missing (the API's `/results` answers 422 with the same words).
    let (results, results_missing) =
        if experiment.state == flags::experiment::ExperimentState::Draft {
            (
                None,
                Some("The experiment has not started: no results yet.".to_owned()),
            )
        } else {
            match service::analyse(&state, tenant_id, &key).await {
                Ok(analysis) => (Some(results_view(&analysis)), None),
                Err(e) if e.kind == ProblemKind::Unprocessable => (None, Some(e.detail)),
                Err(e) => return Err(e.into()),
            }
        };
    let spec = &experiment.spec;
    let actions = if session.can(Scope::Admin) {
        LifecycleAction::allowed_in(experiment.state).to_vec()
    } else {
        Vec::new()
    };
    let mut metrics = vec![metric_line("primary", &spec.primary_metric)];
    metrics.extend(
        spec.secondary_metrics
            .iter()
            .map(|m| metric_line("secondary", m)),
    );
    page(
        StatusCode::OK,
        &DetailPage {
            chrome: session.chrome(SECTION.id, format!("Experiment {key}")),
            base_path: detail_path(&record.key),
            flag_href: flag_path(&record.environment, &spec.flag_key),
            environment: record.environment.clone(),
            state: service::state_name(experiment.state),
            created_at: crate::rfc3339_ms(experiment.created_at),
            started_at: rfc3339(experiment.started_at),
            paused_at: rfc3339(experiment.paused_at),
            concluded_at: rfc3339(experiment.concluded_at),
            kind: type_name(experiment.plan.experiment_type),
            plan: plan_lines(&experiment),
            windows: experiment
                .running_windows()
                .iter()
                .map(|w| {
                    (
                        crate::rfc3339_ms(w.start),
                        w.end
                            .map(crate::rfc3339_ms)
                            .unwrap_or_else(|| "running".to_owned()),
                    )
                })
                .collect(),
            variants: spec
                .variants
                .iter()
                .map(|v| VariantLine {
                    key: v.key.clone(),
                    weight: v.weight,
                    control: v.key == spec.control,
                })
                .collect(),
            metrics,
            guardrails: spec
                .guardrails
                .iter()
                .map(|g| {
                    format!(
                        "{} must not get worse by more than {}",
                        g.metric.key,
                        pct(g.max_relative_degradation)
                    )
                })
                .collect(),
            actions,
            results,
            results_missing,
            key: record.key,
            experiment,
        },
    )
}

/// The plan as the definition list shows it.
fn plan_lines(e: &Experiment) -> Vec<(&'static str, String)> {
    let plan = &e.plan;
    let json = |g: &flags::RuleGroup| serde_json::to_string(g).unwrap_or_default();
    let mut lines = vec![
        (
            "Owner",
            plan.owner.clone().unwrap_or_else(|| "none".to_owned()),
        ),
        (
            "Tags",
            if plan.tags.is_empty() {
                "none".to_owned()
            } else {
                plan.tags.join(", ")
            },
        ),
        (
            "Traffic",
            format!("{}% of the audience is assigned", plan.traffic_percentage),
        ),
        (
            "Audience",
            plan.target_audience
                .as_ref()
                .map_or_else(|| "everyone".to_owned(), json),
        ),
    ];
    if !plan.exclusion_rules.is_empty() {
        lines.push((
            "Excluded",
            plan.exclusion_rules
                .iter()
                .map(json)
                .collect::<Vec<_>>()
                .join(" or "),
        ));
    }
    lines.push((
        "Schedule",
        format!(
            "starts {}, ends {}",
            plan.start_at
                .map_or_else(|| "by hand".to_owned(), crate::rfc3339_ms),
            plan.end_at
                .map_or_else(|| "at the maximum duration".to_owned(), crate::rfc3339_ms),
        ),
    ));
    lines.push((
        "Duration",
        format!(
            "at least {} days before an automatic early completion, at most {} days",
            plan.minimum_duration_days, plan.maximum_duration_days
        ),
    ));
    lines.push((
        "Auto-conclude",
        if plan.auto_conclude {
            "yes: the review job completes it and ships the winner".to_owned()
        } else {
            "no: a person completes it".to_owned()
        },
    ));
    if let Some(reason) = &e.reason {
        lines.push(("Reason", reason.clone()));
    }
    lines
}

// ---- lifecycle -------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ActionForm {
    /// For `conclude`: the variant to ship; empty when no change ships.
    #[serde(default)]
    winner: String,
    /// For `fail`: why.
    #[serde(default)]
    reason: String,
}

/// `POST /console/experiments/{id}/{start|pause|resume|conclude|fail}` (admin scope, as the API's
/// lifecycle routes). A step the state does not allow is the API's 409.
async fn act(
    State(state): State<AppState>,
    Path((key, action)): Path<(String, String)>,
    Submitted { session, form }: Submitted<ActionForm>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    let action = match action.as_str() {
        "start" => LifecycleAction::Start,
        "pause" => LifecycleAction::Pause,
        "resume" => LifecycleAction::Resume,
        "conclude" => LifecycleAction::Conclude {
            winner: Some(form.winner).filter(|w| !w.is_empty()),
            reason: None,
        },
        "fail" => LifecycleAction::Fail {
            reason: Some(form.reason.trim().chars().take(500).collect::<String>())
                .filter(|r| !r.is_empty() && !r.chars().any(char::is_control))
                .unwrap_or_else(|| crate::experiments::OPERATOR_FAIL_REASON.to_owned()),
        },
        other => {
            return Err(ConsoleError::NotFound(format!(
                "experiments have no action `{}`",
                crate::problem::excerpt(other, 64)
            )))
        }
    };
    let (record, _) = service::apply(&state, session.tenant_id(), &key, action).await?;
    Ok(Redirect::to(&detail_path(&record.key)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_p_values_bounded() {
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(-0.00001), "0");
        assert_eq!(pct(0.25), "25%");
        assert_eq!(pct(0.107826), "10.78%");
        assert_eq!(pct(-0.00001), "0%");
        assert_eq!(p_value(0.00001), "< 0.0001");
        assert_eq!(p_value(0.0412), "0.0412");
    }
}
