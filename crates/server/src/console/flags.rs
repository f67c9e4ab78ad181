//! Flags: the list per environment, a flag's rules, variants and field-level history, the kill
//! switch, editing the definition, and an evaluation tester.
//!
//! Reads need the read scope and changes the admin scope, as the admin API's routes do; changes
//! go through [`crate::flag_admin`] (the API's own validation, concurrency and kill switch), and
//! the tester evaluates the served snapshot exactly as OFREP does, without recording exposures.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use flags::{EvaluationContext, Flag, RuleGroup};
use serde::Deserialize;
use serde_json::Value;
use store::{FlagRecord, Scope};

use super::{is_htmx, page, Chrome, ConsoleError, Section, Session, Submitted};
use crate::extract::{check_environment, DEFAULT_ENVIRONMENT};
use crate::feature_flags::{clock_ms, error_details, reason_name};
use crate::flag_admin::{self, definition_of, not_found, FlagTarget};
use crate::problem::ApiError;
use crate::state::AppState;

pub(super) const SECTION: Section = Section {
    id: "flags",
    title: "Flags",
    path: "/console/flags",
    needs: Scope::Read,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/flags", get(list))
        .route("/console/flags/{environment}/{key}", get(detail))
        .route(
            "/console/flags/{environment}/{key}/evaluate",
            post(evaluate),
        )
        .route(
            "/console/flags/{environment}/{key}/kill-switch",
            post(kill_switch),
        )
        .route(
            "/console/flags/{environment}/{key}/edit",
            get(edit_page).post(edit),
        )
        .route("/console/flags/{environment}/{key}/delete", post(delete))
}

/// Environments offered in the picker at most (the list is bounded).
const MAX_ENVIRONMENTS: u32 = 100;
/// Audit entries shown on a flag's page (the API pages through the rest).
const AUDIT_SHOWN: u32 = 50;

fn environment_of(name: String) -> Result<String, ConsoleError> {
    Ok(check_environment(name)?)
}

fn detail_path(environment: &str, key: &str) -> String {
    format!(
        "/console/flags/{}/{}",
        encode_segment(environment),
        encode_segment(key)
    )
}

/// A path segment, percent-encoded (flag keys are `[A-Za-z0-9_.-]`, but stay safe).
pub(super) fn encode_segment(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// JSON as compact text, for values shown in tables.
fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn percent(bp: u32) -> String {
    format!("{}%", f64::from(bp) / 100.0)
}

/// What a rule serves, in words: its variant, or its rollout and split.
fn rule_serves(rule: &flags::Rule) -> String {
    match (&rule.variant, &rule.split) {
        (Some(v), _) => v.clone(),
        (None, Some(split)) => {
            let weights = match &split.variants {
                Some(list) => list
                    .iter()
                    .map(|sv| format!("{} {}", sv.variant, percent(sv.weight_bp)))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => "the flag's weights".to_owned(),
            };
            format!(
                "{} of matches get a split: {weights}; the rest the default variant",
                percent(split.rollout_bp.unwrap_or(flags::BUCKETS))
            )
        }
        (None, None) => String::new(),
    }
}

fn snake(value: impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

// ---- list ------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ListQuery {
    environment: Option<String>,
}

struct FlagRow {
    key: String,
    href: String,
    flag_type: String,
    status: String,
    killed: bool,
    variants: String,
    updated_at: String,
}

#[derive(askama::Template)]
#[template(path = "console/flags.html")]
struct ListPage {
    chrome: Chrome,
    environment: String,
    environments: Vec<String>,
    flags: Vec<FlagRow>,
    /// Evaluations in the last 24 hours and stale flags (`flag_usage`), as HTML.
    usage_panel: String,
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let environment = environment_of(
        query
            .environment
            .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned()),
    )?;
    let tenant_id = session.tenant_id();
    let store = state.store();
    let mut environments = store
        .flag_environment_names(tenant_id, MAX_ENVIRONMENTS)
        .await?;
    for name in [DEFAULT_ENVIRONMENT, environment.as_str()] {
        if !environments.iter().any(|e| e == name) {
            environments.push(name.to_owned());
        }
    }
    environments.sort();
    let mut flags = Vec::new();
    for record in store.flags(tenant_id, &environment).await? {
        let flag = definition_of(&record)?;
        flags.push(FlagRow {
            href: detail_path(&environment, &record.key),
            key: record.key,
            flag_type: snake(flag.flag_type),
            status: snake(flag.status),
            killed: flag.kill_switch,
            variants: flag
                .variants
                .iter()
                .map(|v| v.key.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            updated_at: crate::rfc3339_ms(record.updated_at_ms),
        });
    }
    let usage_panel =
        super::flag_usage::list_panel(&state, tenant_id, &environment, detail_path).await?;
    page(
        StatusCode::OK,
        &ListPage {
            chrome: session.chrome(SECTION.id, "Flags"),
            environment,
            environments,
            flags,
            usage_panel,
        },
    )
}

// ---- detail ----------------------------------------------------------------------------------

struct VariantRow {
    key: String,
    value: String,
    weight: String,
    /// `default`, `off`, `control`, as many as apply.
    roles: String,
}

struct RuleRow {
    id: String,
    when: String,
    variant: String,
}

struct OverrideRow {
    environment: String,
    enabled: String,
    rollout: String,
    default_variant: String,
    /// The variant or value served to everyone in the environment, before targeting.
    serves: String,
}

struct ChangeRow {
    path: String,
    before: Option<String>,
    after: Option<String>,
}

struct AuditRow {
    version: i64,
    action: String,
    actor: String,
    at: String,
    changes: Vec<ChangeRow>,
}

/// What the tester answered, as the page shows it.
pub(super) struct EvaluationView {
    value: String,
    variant: String,
    reason: String,
    rule: String,
    /// The environment whose override was served, if one was.
    environment_override: String,
    disabled_by: String,
    bucket: String,
    error: String,
}

/// A flag's page: its definition as readable parts, its history, and the controls.
struct FlagView {
    key: String,
    environment: String,
    version: i64,
    updated_at: String,
    updated_by: String,
    flag_type: String,
    status: String,
    description: String,
    owner: String,
    tags: String,
    killed: bool,
    default_variant: String,
    off_variant: String,
    rollout: String,
    bucket_by: String,
    expires_at: String,
    enable_at: String,
    ramp: String,
    allowed_tenants: String,
    required_tiers: String,
    track_exposure: bool,
    /// Some variant has a weight: users outside the rules get the weighted split.
    has_split: bool,
    variants: Vec<VariantRow>,
    rules: Vec<RuleRow>,
    prerequisites: Vec<String>,
    overrides: Vec<OverrideRow>,
    raw_json: String,
    audit: Vec<AuditRow>,
    base_path: String,
    /// Evaluations and assignments per variant over time (`flag_usage`), as HTML.
    usage_panel: String,
    /// The guarded-rollout section, rendered by `console::rollouts`.
    rollout_html: String,
}

#[derive(askama::Template)]
#[template(path = "console/flag_detail.html")]
struct DetailPage {
    chrome: Chrome,
    flag: FlagView,
    context: String,
    context_error: Option<String>,
    result: Option<EvaluationView>,
}

#[derive(askama::Template)]
#[template(path = "console/flag_evaluation.html")]
struct EvaluationFragment {
    context_error: Option<String>,
    result: Option<EvaluationView>,
}

/// A condition tree in words: `country in ["US","CA"]`, `all of (…)`, `not (…)`.
fn describe(group: &RuleGroup) -> String {
    let join = |members: &[RuleGroup], word: &str| {
        let parts: Vec<String> = members.iter().map(describe).collect();
        format!("{word} of ({})", parts.join("; "))
    };
    match group {
        RuleGroup::All { all } => join(all, "all"),
        RuleGroup::Any { any } => join(any, "any"),
        RuleGroup::None { none } => join(none, "none"),
        RuleGroup::Condition(c) => {
            let literal = match (&c.values, &c.value) {
                (Some(values), _) => json_text(&Value::Array(values.clone())),
                (None, Some(value)) => json_text(value),
                (None, None) => String::new(),
            };
            let mut text = format!("{} {} {literal}", c.attribute, c.op);
            if c.case_insensitive {
                text.push_str(" (ignoring case)");
            }
            if c.negate {
                text = format!("not ({text})");
            }
            text.trim_end().to_owned()
        }
    }
}

fn flag_view(record: &FlagRecord, flag: &Flag, audit: Vec<store::FlagAuditRecord>) -> FlagView {
    let schedule = flag.schedule.clone().unwrap_or_default();
    FlagView {
        key: record.key.clone(),
        environment: record.environment.clone(),
        version: record.version,
        updated_at: crate::rfc3339_ms(record.updated_at_ms),
        updated_by: record.updated_by.clone(),
        flag_type: snake(flag.flag_type),
        status: snake(flag.status),
        description: flag.description.clone().unwrap_or_default(),
        owner: flag.owner.clone().unwrap_or_default(),
        tags: flag.tags.join(", "),
        killed: flag.kill_switch,
        default_variant: flag.default_variant.clone(),
        off_variant: flag.off_variant.clone(),
        rollout: percent(flag.rollout_bp.unwrap_or(10_000)),
        bucket_by: flag
            .bucket_by
            .clone()
            .unwrap_or_else(|| flags::TARGETING_KEY.to_owned()),
        expires_at: flag.expires_at.clone().unwrap_or_default(),
        enable_at: schedule.enable_at.unwrap_or_default(),
        ramp: schedule
            .ramp
            .map(|r| {
                format!(
                    "{} at {} to {} at {}",
                    percent(r.from_bp),
                    r.start,
                    percent(r.to_bp),
                    r.end
                )
            })
            .unwrap_or_default(),
        allowed_tenants: flag.allowed_tenants.join(", "),
        required_tiers: flag.required_tiers.join(", "),
        track_exposure: flag.track_exposure,
        has_split: flag.variants.iter().any(|v| v.weight_bp > 0),
        variants: flag
            .variants
            .iter()
            .map(|v| VariantRow {
                key: v.key.clone(),
                value: json_text(&v.value),
                weight: if v.weight_bp == 0 {
                    String::new()
                } else {
                    percent(v.weight_bp)
                },
                roles: [
                    (v.key == flag.default_variant, "default"),
                    (v.key == flag.off_variant, "off"),
                    (v.control, "control"),
                ]
                .iter()
                .filter(|(applies, _)| *applies)
                .map(|(_, role)| *role)
                .collect::<Vec<_>>()
                .join(", "),
            })
            .collect(),
        rules: flag
            .rules
            .iter()
            .map(|r| RuleRow {
                id: r.id.clone(),
                when: describe(&r.when),
                variant: rule_serves(r),
            })
            .collect(),
        prerequisites: flag
            .prerequisites
            .iter()
            .map(|p| format!("{} is one of {}", p.flag, p.variants.join(", ")))
            .collect(),
        overrides: flag
            .environments
            .iter()
            .map(|(name, o)| OverrideRow {
                environment: name.clone(),
                enabled: o.enabled.map(|e| e.to_string()).unwrap_or_default(),
                rollout: o.rollout_bp.map(percent).unwrap_or_default(),
                default_variant: o.default_variant.clone().unwrap_or_default(),
                serves: match (&o.variant, &o.value) {
                    (Some(v), _) => format!("variant {v}"),
                    (None, Some(value)) => format!("value {}", json_text(value)),
                    (None, None) => String::new(),
                },
            })
            .collect(),
        raw_json: pretty_definition(record),
        audit: audit
            .into_iter()
            .map(|a| AuditRow {
                version: a.version,
                action: a.action.as_str().to_owned(),
                actor: a.actor,
                at: crate::rfc3339_ms(a.at_ms),
                changes: a
                    .diff
                    .into_iter()
                    .map(|c| ChangeRow {
                        path: if c.path.is_empty() {
                            "(whole definition)".to_owned()
                        } else {
                            c.path
                        },
                        before: c.before.as_ref().map(json_text),
                        after: c.after.as_ref().map(json_text),
                    })
                    .collect(),
            })
            .collect(),
        base_path: detail_path(&record.environment, &record.key),
        usage_panel: String::new(),
        rollout_html: String::new(),
    }
}

/// The stored definition, indented for reading and editing.
fn pretty_definition(record: &FlagRecord) -> String {
    serde_json::from_str::<Value>(&record.definition_json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| record.definition_json.clone())
}

/// The tenant's flag with its view, or 404 (another tenant's flag is a missing one).
async fn load_view(
    state: &AppState,
    session: &Session,
    environment: &str,
    key: &str,
) -> Result<FlagView, ConsoleError> {
    let store = state.store();
    let record = store
        .flag(session.tenant_id(), environment, key)
        .await?
        .ok_or_else(|| not_found(key, environment))?;
    let flag = definition_of(&record)?;
    let audit = store
        .flag_audit(session.tenant_id(), environment, key, AUDIT_SHOWN, None)
        .await?;
    let mut view = flag_view(&record, &flag, audit);
    view.usage_panel =
        super::flag_usage::detail_panel(state, session.tenant_id(), environment, key).await?;
    view.rollout_html =
        super::rollouts::section(state, session, environment, key, &view.base_path).await?;
    Ok(view)
}

const EXAMPLE_CONTEXT: &str = r#"{"targetingKey":"user-1","country":"US"}"#;

async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path((environment, key)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let environment = environment_of(environment)?;
    let flag = load_view(&state, &session, &environment, &key).await?;
    page(
        StatusCode::OK,
        &DetailPage {
            chrome: session.chrome(SECTION.id, format!("Flag {key}")),
            flag,
            context: EXAMPLE_CONTEXT.to_owned(),
            context_error: None,
            result: None,
        },
    )
}

// ---- evaluation tester -----------------------------------------------------------------------

#[derive(Deserialize)]
struct EvaluateForm {
    #[serde(default)]
    context: String,
}

/// Why a typed context cannot be used, naming `context` (or the attribute inside it).
fn parse_context(text: &str) -> Result<EvaluationContext, String> {
    if text.trim().is_empty() {
        return Ok(EvaluationContext::default());
    }
    let json: Value = serde_json::from_str(text).map_err(|e| {
        format!("context: not valid JSON ({e}); write an object such as {EXAMPLE_CONTEXT}")
    })?;
    if !json.is_object() {
        return Err(format!(
            "context: must be a JSON object such as {EXAMPLE_CONTEXT}"
        ));
    }
    EvaluationContext::from_json(&json).map_err(|e| {
        if e.path.is_empty() {
            format!("context: {e}")
        } else {
            format!("context.{}: {e}", e.path)
        }
    })
}

/// Evaluates `key` against the environment's served flag set, as OFREP would answer.
async fn evaluate_now(
    state: &AppState,
    tenant_id: &str,
    environment: &str,
    key: &str,
    ctx: &EvaluationContext,
) -> Result<EvaluationView, ConsoleError> {
    let snapshot = state
        .flags()
        .snapshot(state.store(), tenant_id, environment)
        .await
        .map_err(ApiError::from)?;
    let e = snapshot
        .set
        .evaluate(key, ctx, Some(environment), clock_ms());
    if e.error_code == Some(flags::ErrorCode::FlagNotFound) {
        return Err(not_found(key, environment).into());
    }
    Ok(EvaluationView {
        value: json_text(e.value),
        variant: e.variant.unwrap_or_default().to_owned(),
        reason: reason_name(e.reason).to_owned(),
        rule: e.rule_id.unwrap_or_default().to_owned(),
        environment_override: e.environment_override.unwrap_or_default().to_owned(),
        disabled_by: e.disabled_by.map(snake).unwrap_or_default(),
        bucket: e.bucket.map(|b| b.to_string()).unwrap_or_default(),
        error: e
            .error_code
            .map(|code| error_details(key, code, &snapshot.set))
            .unwrap_or_default(),
    })
}

/// `POST …/evaluate`: the tester (read scope). htmx gets the result fragment; a plain form post
/// gets the whole page with the result.
async fn evaluate(
    State(state): State<AppState>,
    Path((environment, key)): Path<(String, String)>,
    headers: HeaderMap,
    Submitted { session, form }: Submitted<EvaluateForm>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Read)?;
    let environment = environment_of(environment)?;
    let (status, context_error, result) = match parse_context(&form.context) {
        Ok(ctx) => {
            let view = evaluate_now(&state, session.tenant_id(), &environment, &key, &ctx).await?;
            (StatusCode::OK, None, Some(view))
        }
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, Some(message), None),
    };
    if is_htmx(&headers) {
        return page(
            status,
            &EvaluationFragment {
                context_error,
                result,
            },
        );
    }
    let flag = load_view(&state, &session, &environment, &key).await?;
    page(
        status,
        &DetailPage {
            chrome: session.chrome(SECTION.id, format!("Flag {key}")),
            flag,
            context: form.context,
            context_error,
            result,
        },
    )
}

// ---- kill switch -----------------------------------------------------------------------------

/// The flag a console write changes, done by the signed-in key (recorded as the actor).
fn target_of<'a>(session: &'a Session, environment: &'a str, key: &'a str) -> FlagTarget<'a> {
    FlagTarget {
        tenant_id: session.tenant_id(),
        environment,
        key,
        actor: &session.principal.key_id,
    }
}

#[derive(Deserialize)]
struct KillSwitchForm {
    /// `off` turns the flag off (kill switch on), `on` turns it back on.
    turn: String,
    /// The version the page showed: a change since then is a conflict, not overwritten.
    version: i64,
}

/// `POST …/kill-switch` (admin scope, as the API's kill route).
async fn kill_switch(
    State(state): State<AppState>,
    Path((environment, key)): Path<(String, String)>,
    Submitted { session, form }: Submitted<KillSwitchForm>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    let environment = environment_of(environment)?;
    let target = target_of(&session, &environment, &key);
    match form.turn.as_str() {
        "off" => flag_admin::kill(&state, target, Some(form.version)).await?,
        "on" => flag_admin::revive(&state, target, Some(form.version)).await?,
        _ => {
            return Err(ConsoleError::Invalid(
                "field `turn`: must be `off` or `on`".to_owned(),
            ))
        }
    };
    Ok(Redirect::to(&detail_path(&environment, &key)).into_response())
}

// ---- delete ----------------------------------------------------------------------------------

#[derive(Deserialize)]
struct DeleteForm {
    /// The version the page showed: a change since then is a conflict.
    version: i64,
}

/// `POST …/delete` (admin scope, as the API's delete): refused while another flag has it as a
/// prerequisite; the history stays readable over the API.
async fn delete(
    State(state): State<AppState>,
    Path((environment, key)): Path<(String, String)>,
    Submitted { session, form }: Submitted<DeleteForm>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    let environment = environment_of(environment)?;
    let target = target_of(&session, &environment, &key);
    flag_admin::delete(&state, target, Some(form.version)).await?;
    let list = format!(
        "/console/flags?environment={}",
        encode_segment(&environment)
    );
    Ok(Redirect::to(&list).into_response())
}

// ---- edit ------------------------------------------------------------------------------------

#[derive(askama::Template)]
#[template(path = "console/flag_edit.html")]
struct EditPage {
    chrome: Chrome,
    key: String,
    environment: String,
    base_path: String,
    version: i64,
    definition: String,
    /// The message shown next to the definition, and the field it names.
    error: Option<String>,
    error_field: String,
    /// Set when the flag changed since the form was opened: the version now stored.
    conflict: Option<i64>,
}

#[derive(Deserialize)]
struct EditForm {
    definition: String,
    version: i64,
}

async fn edit_page(
    State(state): State<AppState>,
    session: Session,
    Path((environment, key)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    let environment = environment_of(environment)?;
    let record = state
        .store()
        .flag(session.tenant_id(), &environment, &key)
        .await?
        .ok_or_else(|| not_found(&key, &environment))?;
    let definition = pretty_definition(&record);
    page(
        StatusCode::OK,
        &EditPage {
            chrome: session.chrome(SECTION.id, format!("Edit flag {key}")),
            base_path: detail_path(&environment, &key),
            key,
            environment,
            version: record.version,
            definition,
            error: None,
            error_field: String::new(),
            conflict: None,
        },
    )
}

/// `POST …/edit` (admin scope, as the API's replace): validated by the same code; a problem is
/// shown next to the definition with the API's status (422 invalid, 412 changed meanwhile).
async fn edit(
    State(state): State<AppState>,
    Path((environment, key)): Path<(String, String)>,
    Submitted { session, form }: Submitted<EditForm>,
) -> Result<Response, ConsoleError> {
    session.require(Scope::Admin)?;
    let environment = environment_of(environment)?;
    let outcome = match serde_json::from_str::<Value>(&form.definition) {
        Err(e) => Err(ApiError::invalid_field(
            "definition",
            format!("the definition is not valid JSON: {e}"),
        )),
        Ok(json) if !json.is_object() => Err(ApiError::invalid_field(
            "definition",
            "the definition must be a JSON object in the flag format",
        )),
        Ok(json) => match flag_admin::parse_flag(json) {
            Err(e) => Err(e),
            Ok(flag) => {
                let target = target_of(&session, &environment, &key);
                flag_admin::replace(&state, target, &flag, Some(form.version)).await
            }
        },
    };
    let error = match outcome {
        Ok(_) => return Ok(Redirect::to(&detail_path(&environment, &key)).into_response()),
        Err(e) => e,
    };
    let status = error.kind.status();
    if !matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::PRECONDITION_FAILED
            | StatusCode::CONFLICT
    ) {
        return Err(error.into());
    }
    let conflict = if status == StatusCode::PRECONDITION_FAILED {
        state
            .store()
            .flag(session.tenant_id(), &environment, &key)
            .await?
            .map(|r| r.version)
    } else {
        None
    };
    let error_field = error
        .extensions
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or("definition")
        .to_owned();
    // A definition problem is a 422 whatever the API's body parser would say (400 for a type
    // error): the form was read, its content cannot be used.
    let status = if status == StatusCode::BAD_REQUEST {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        status
    };
    page(
        status,
        &EditPage {
            chrome: session.chrome(SECTION.id, format!("Edit flag {key}")),
            base_path: detail_path(&environment, &key),
            key,
            environment,
            version: form.version,
            definition: form.definition,
            error: Some(error.detail),
            error_field,
            conflict,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_read_as_words() {
        let group: RuleGroup = serde_json::from_value(serde_json::json!({
            "all": [
                {"attribute": "country", "op": "in", "values": ["US", "CA"]},
                {"attribute": "plan", "op": "eq", "value": "free", "negate": true}
            ]
        }))
        .unwrap();
        assert_eq!(
            describe(&group),
            r#"all of (country in ["US","CA"]; not (plan eq "free"))"#
        );
    }

    #[test]
    fn a_context_that_cannot_be_used_names_the_field() {
        assert!(parse_context("").is_ok());
        assert!(parse_context(r#"{"targetingKey":"u1"}"#).is_ok());
        for bad in ["{", "[1]", "3"] {
            let message = parse_context(bad).unwrap_err();
            assert!(message.starts_with("context"), "{bad}: {message}");
        }
    }
}
