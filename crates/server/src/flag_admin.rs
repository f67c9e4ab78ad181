//! Changing a tenant's flags: parsing a definition, validating it against the whole
//! environment, optimistic concurrency and the kill switch. The admin API (`routes::flags`) and
//! the console both call these, so a change is checked the same way whichever way it comes.
//!
//! Every change holds the environment's write lock from validation to reload
//! ([`crate::feature_flags::FlagService::lock_for_write`]), so it is served before the caller
//! answers and two concurrent changes cannot together make a set neither validated.

use flags::{Flag, ValidationError};
use serde_json::Value;
use store::{FlagAction, FlagRecord};

use crate::feature_flags::{parse_records, validate_change};
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// Which flag a change is about, and who makes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlagTarget<'a> {
    pub tenant_id: &'a str,
    pub environment: &'a str,
    pub key: &'a str,
    /// The API key id recorded in the audit trail.
    pub actor: &'a str,
}

/// A flag definition from JSON: type errors are 400 naming the field (by the documented
/// format's field names).
pub(crate) fn parse_flag(body: Value) -> Result<Flag, ApiError> {
    serde_path_to_error::deserialize::<_, Flag>(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            return ApiError::invalid_field(
                crate::extract::BODY_FIELD,
                format!("the request body must be a flag definition object: {inner}"),
            );
        }
        ApiError::invalid_field(&path, format!("field `{path}`: {inner}"))
    })
}

/// 422 naming the first field at fault and listing every problem.
pub(crate) fn invalid_definition(errors: Vec<ValidationError>) -> ApiError {
    let first = errors.first().cloned().unwrap_or(ValidationError {
        flag: String::new(),
        path: String::new(),
        message: "invalid flag set".into(),
    });
    let more = match errors.len() {
        0 | 1 => String::new(),
        n => format!(
            " (and {} more problem{})",
            n - 1,
            if n == 2 { "" } else { "s" }
        ),
    };
    let listed: Vec<Value> = errors
        .iter()
        .map(|e| serde_json::json!({"flag": e.flag, "path": e.path, "message": e.message}))
        .collect();
    ApiError::new(ProblemKind::Unprocessable, format!("{first}{more}"))
        .with("field", first.path.clone())
        .with("errors", Value::Array(listed))
}

/// The definition as stored: serialised from the parsed flag, so defaults are left out.
pub(crate) fn canonical_json(flag: &Flag) -> Result<String, ApiError> {
    serde_json::to_string(flag).map_err(|_| ApiError::internal())
}

/// 404 for a flag the tenant does not have in the environment.
pub(crate) fn not_found(key: &str, environment: &str) -> ApiError {
    ApiError::not_found(format!("no flag `{key}` in environment `{environment}`"))
}

/// The stored definition of a record, parsed.
pub(crate) fn definition_of(record: &FlagRecord) -> Result<Flag, ApiError> {
    parse_records(std::slice::from_ref(record))?
        .pop()
        .ok_or_else(ApiError::internal)
}

/// Creates a flag (admin scope): refused when the environment already holds the most flags it
/// may (422 naming `key`) or a flag with this key (409); the environment with it must validate.
pub(crate) async fn create(
    state: &AppState,
    target: FlagTarget<'_>,
    flag: &Flag,
) -> Result<FlagRecord, ApiError> {
    let FlagTarget {
        tenant_id,
        environment,
        actor,
        ..
    } = target;
    let store = state.store();
    let lock = state
        .flags()
        .lock_for_write(store, tenant_id, environment)
        .await?;
    let current = store.flags(tenant_id, environment).await?;
    if current.len() >= state.config().max_flags_per_environment {
        return Err(ApiError::new(
            ProblemKind::Unprocessable,
            format!(
                "environment `{environment}` already holds {} flags, the most one environment may hold; delete unused flags first",
                current.len()
            ),
        )
        .with("field", "key"));
    }
    if current.iter().any(|r| r.key == flag.key) {
        return Err(ApiError::new(
            ProblemKind::Conflict,
            format!("flag `{}` already exists in environment `{environment}`; change it with PUT /api/v1/flags/{}", flag.key, flag.key),
        ));
    }
    validate_change(parse_records(&current)?, Some(flag), None).map_err(invalid_definition)?;
    let record = store
        .create_flag(
            tenant_id,
            environment,
            &flag.key,
            &canonical_json(flag)?,
            actor,
        )
        .await?;
    lock.publish(store).await?;
    Ok(record)
}

/// Replaces an existing flag's definition (admin scope). The definition's key must be the
/// flag's; the environment with it must validate; with `expected`, the flag must still be at
/// that version (412 otherwise); a running or paused experiment's flag must keep the
/// experiment's variants and split (409 naming the experiment).
pub(crate) async fn replace(
    state: &AppState,
    target: FlagTarget<'_>,
    flag: &Flag,
    expected: Option<i64>,
) -> Result<FlagRecord, ApiError> {
    let FlagTarget {
        tenant_id,
        environment,
        key,
        actor,
    } = target;
    if flag.key != key {
        return Err(ApiError::new(
            ProblemKind::Unprocessable,
            format!(
                "the definition's key `{}` is not the flag's `{key}` (keys cannot be renamed)",
                flag.key
            ),
        )
        .with("field", "key"));
    }
    let store = state.store();
    let lock = state
        .flags()
        .lock_for_write(store, tenant_id, environment)
        .await?;
    let current = store.flags(tenant_id, environment).await?;
    if !current.iter().any(|r| r.key == key) {
        return Err(not_found(key, environment));
    }
    validate_change(parse_records(&current)?, Some(flag), None).map_err(invalid_definition)?;
    crate::experiments::check_owned_flag_change(state, tenant_id, environment, key, Some(flag))
        .await?;
    let record = store
        .update_flag(
            tenant_id,
            environment,
            key,
            &canonical_json(flag)?,
            expected,
            actor,
        )
        .await?;
    lock.publish(store).await?;
    Ok(record)
}

/// Turns the kill switch on (admin scope): the flag serves its off variant everywhere, at once,
/// recorded as `kill`. A flag already killed is returned unchanged (its version still checked
/// against `expected`).
pub(crate) async fn kill(
    state: &AppState,
    target: FlagTarget<'_>,
    expected: Option<i64>,
) -> Result<FlagRecord, ApiError> {
    let FlagTarget {
        tenant_id,
        environment,
        key,
        actor,
    } = target;
    let store = state.store();
    let lock = state
        .flags()
        .lock_for_write(store, tenant_id, environment)
        .await?;
    let record = store
        .flag(tenant_id, environment, key)
        .await?
        .ok_or_else(|| not_found(key, environment))?;
    let mut flag = definition_of(&record)?;
    if flag.kill_switch {
        if let Some(expected) = expected.filter(|v| *v != record.version) {
            return Err(store::StoreError::VersionMismatch {
                what: format!("flag {key}"),
                expected,
                current: Some(record.version),
            }
            .into());
        }
        return Ok(record);
    }
    flag.kill_switch = true;
    let record = store
        .update_flag_as(
            FlagAction::Kill,
            tenant_id,
            environment,
            key,
            &canonical_json(&flag)?,
            expected,
            actor,
        )
        .await?;
    lock.publish(store).await?;
    Ok(record)
}

/// Turns the kill switch off again (admin scope): the stored definition with `kill_switch`
/// false, replaced as [`replace`] does (the API's way to undo a kill is the same replace).
pub(crate) async fn revive(
    state: &AppState,
    target: FlagTarget<'_>,
    expected: Option<i64>,
) -> Result<FlagRecord, ApiError> {
    let record = state
        .store()
        .flag(target.tenant_id, target.environment, target.key)
        .await?
        .ok_or_else(|| not_found(target.key, target.environment))?;
    let mut flag = definition_of(&record)?;
    if !flag.kill_switch {
        return Ok(record);
    }
    flag.kill_switch = false;
    // Based on the version read here unless the caller named one: a change in between is a
    // conflict, not overwritten.
    replace(state, target, &flag, expected.or(Some(record.version))).await
}

/// Deletes a flag (admin scope); its audit trail stays. Refused (409) while an experiment that
/// is not completed or failed owns it, and (409, listing them) while another flag has it as a
/// prerequisite; with `expected`, the flag must still be at that
/// version (412 otherwise).
pub(crate) async fn delete(
    state: &AppState,
    target: FlagTarget<'_>,
    expected: Option<i64>,
) -> Result<(), ApiError> {
    let FlagTarget {
        tenant_id,
        environment,
        key,
        actor,
    } = target;
    let store = state.store();
    let lock = state
        .flags()
        .lock_for_write(store, tenant_id, environment)
        .await?;
    let current = store.flags(tenant_id, environment).await?;
    if !current.iter().any(|r| r.key == key) {
        return Err(not_found(key, environment));
    }
    crate::experiments::check_owned_flag_change(state, tenant_id, environment, key, None).await?;
    let definitions = parse_records(&current)?;
    let dependents: Vec<&str> = definitions
        .iter()
        .filter(|f| f.prerequisites.iter().any(|p| p.flag == key))
        .map(|f| f.key.as_str())
        .collect();
    if !dependents.is_empty() {
        return Err(ApiError::new(
            ProblemKind::Conflict,
            format!(
                "flag `{key}` is a prerequisite of {}; remove it from their prerequisites first",
                dependents
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with("dependents", dependents));
    }
    store
        .delete_flag(tenant_id, environment, key, expected, actor)
        .await?;
    lock.publish(store).await?;
    Ok(())
}

/// The rollout `environment` serves: its override's `rollout_bp` when the flag has one for
/// it, else the flag's own.
pub(crate) fn rollout_slot<'f>(flag: &'f mut Flag, environment: &str) -> &'f mut Option<u32> {
    match flag
        .environments
        .get_mut(environment)
        .filter(|e| e.rollout_bp.is_some())
    {
        Some(over) => &mut over.rollout_bp,
        None => &mut flag.rollout_bp,
    }
}

/// Whether `flag` would validate in its environment as it stands (the same check as
/// [`replace`], without writing): the invalid definition's 422 otherwise.
pub(crate) async fn check_replacement(
    state: &AppState,
    tenant_id: &str,
    environment: &str,
    flag: &Flag,
) -> Result<(), ApiError> {
    let current = state.store().flags(tenant_id, environment).await?;
    validate_change(parse_records(&current)?, Some(flag), None).map_err(invalid_definition)
}

/// Sets a flag's rollout to `bp` basis points (a no-op when it is there already) through
/// [`replace`], so the change is validated, versioned and in the flag audit trail. The rollout
/// served in the target environment is changed: its override's `rollout_bp` when it has one,
/// else the flag's own. A lost version race is retried with the flag read again. Automated
/// controllers (the feedback traffic shift, guarded rollouts) share it.
pub(crate) async fn set_rollout(
    state: &AppState,
    target: FlagTarget<'_>,
    bp: u32,
) -> Result<FlagRecord, ApiError> {
    let mut last = None;
    for _ in 0..3 {
        let record = state
            .store()
            .flag(target.tenant_id, target.environment, target.key)
            .await?
            .ok_or_else(|| not_found(target.key, target.environment))?;
        let mut flag = definition_of(&record)?;
        let slot = rollout_slot(&mut flag, target.environment);
        if *slot == Some(bp) {
            return Ok(record);
        }
        *slot = Some(bp);
        match replace(state, target, &flag, Some(record.version)).await {
            Ok(record) => return Ok(record),
            Err(e) if e.kind == ProblemKind::PreconditionFailed => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(ApiError::internal))
}
