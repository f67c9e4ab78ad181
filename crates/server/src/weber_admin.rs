//! The Weber use cases that change a tenant's data rather than read it: its engine settings
//! (`eps` and `window`) and erasing one user. The API routes call these; the console and the CLI
//! can call them the same way.

use store::{ErasureCounts, WeberSettingsRecord};
use weber::{WeberParams, MAX_EPS, MIN_EPS};

use crate::problem::ApiError;
use crate::state::AppState;

/// Largest window a tenant may set. The engine accepts up to `weber::MAX_WINDOW` (about a
/// million), but the server keeps a streaming state of `window` sentiments per active user and
/// reads up to `window` events per recalculation, so it holds tenants to 10,000.
pub const MAX_TENANT_WINDOW: u64 = 10_000;

/// A tenant's effective Weber settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EffectiveSettings {
    pub params: WeberParams,
    /// The server's defaults (what a tenant without its own settings gets).
    pub defaults: WeberParams,
    /// When the tenant last set them; `None`: the tenant uses the defaults.
    pub updated_at_ms: Option<i64>,
}

/// The tenant's settings, read from the store (not this replica's cache, so the answer is what
/// every replica converges to).
pub(crate) async fn settings(
    state: &AppState,
    tenant_id: &str,
) -> Result<EffectiveSettings, ApiError> {
    let pipeline = state.profiles();
    let params = pipeline.params_fresh(state.store(), tenant_id).await?;
    let updated_at_ms = state
        .store()
        .weber_settings(tenant_id)
        .await?
        .map(|r| r.updated_at_ms);
    Ok(EffectiveSettings {
        params,
        defaults: pipeline.settings.params,
        updated_at_ms,
    })
}

/// Checks `eps` and `window` against the engine's bounds (and the server's window cap): a
/// problem naming the field.
pub(crate) fn validate_params(eps: f64, window: u64) -> Result<WeberParams, ApiError> {
    if !(eps.is_finite() && (MIN_EPS..=MAX_EPS).contains(&eps)) {
        return Err(ApiError::invalid_field(
            "eps",
            format!("eps must be a finite number from {MIN_EPS:e} to {MAX_EPS:e}, got {eps}"),
        ));
    }
    if !(1..=MAX_TENANT_WINDOW).contains(&window) {
        return Err(ApiError::invalid_field(
            "window",
            format!("window must be an integer from 1 to {MAX_TENANT_WINDOW}, got {window}"),
        ));
    }
    let window = usize::try_from(window)
        .map_err(|_| ApiError::invalid_field("window", "window is too large"))?;
    WeberParams::new(window, eps).map_err(|e| {
        let field = match e {
            weber::WeberError::InvalidWindow(_) => "window",
            _ => "eps",
        };
        ApiError::invalid_field(field, e.to_string())
    })
}

/// What a settings change did.
pub(crate) struct SettingsChanged {
    pub settings: EffectiveSettings,
    /// The `weber.recalculate` job that brings the stored profiles to the new settings; `None`
    /// when the settings were already these (nothing to recalculate).
    pub recalculation: Option<store::Enqueued>,
}

/// Sets the tenant's `eps` and `window`. This replica uses them at once; other replicas within
/// [`crate::profiles::TENANT_SETTINGS_TTL`]. When they differ from the effective ones, a
/// `weber.recalculate` job for every user of the tenant is enqueued (bulk queue), so stored
/// profiles follow; it reads the settings from the store, whichever replica runs it.
pub(crate) async fn put_settings(
    state: &AppState,
    tenant_id: &str,
    key_id: &str,
    eps: f64,
    window: u64,
) -> Result<SettingsChanged, ApiError> {
    let params = validate_params(eps, window)?;
    let pipeline = state.profiles();
    let before = pipeline.params_fresh(state.store(), tenant_id).await?;
    let now = crate::jobs::now_ms();
    state
        .store()
        .put_weber_settings(
            tenant_id,
            &WeberSettingsRecord {
                eps: params.eps(),
                window: i64::try_from(params.window()).unwrap_or(i64::MAX),
                updated_at_ms: now,
                updated_by: key_id.to_owned(),
            },
        )
        .await?;
    pipeline.set_params(tenant_id, params);
    let recalculation = if before == params {
        None
    } else {
        let request = crate::jobs::EnqueueRequest {
            handler: crate::jobs::WEBER_RECALCULATE.to_owned(),
            priority: Some(jobs::Priority::Bulk),
            ..crate::jobs::EnqueueRequest::default()
        };
        Some(state.jobs().enqueue(tenant_id, &request, now).await?)
    };
    Ok(SettingsChanged {
        settings: EffectiveSettings {
            params,
            defaults: pipeline.settings.params,
            updated_at_ms: Some(now),
        },
        recalculation,
    })
}

/// Erases one user's Weber data in the tenant (interactions, profile, calculation audit,
/// purchases, predictions) in one store transaction, audited under a pseudonym (see
/// `store::erasure_subject_hash`), then drops the user from this replica's streaming state and
/// the profile read cache. `None` when the tenant had nothing stored for the user (nothing is
/// recorded then, so a repeated erasure is harmless and answers "not found").
pub(crate) async fn erase_user(
    state: &AppState,
    tenant_id: &str,
    user_id: &str,
    key_id: &str,
) -> Result<Option<ErasureCounts>, ApiError> {
    crate::weber_reads::check_user_id("user_id", user_id)?;
    let pipeline = state.profiles();
    // Before and after: a read racing the erasure may have cached the profile in between.
    pipeline.forget_user(tenant_id, user_id).await;
    let counts = state
        .store()
        .erase_weber_user(tenant_id, user_id, key_id, crate::jobs::now_ms())
        .await?;
    pipeline.forget_user(tenant_id, user_id).await;
    if counts.total() > 0 {
        // The worker holding the streaming states may run in another replica.
        pipeline
            .publish(
                state,
                &[crate::profiles::EventMessage::erasure(tenant_id, user_id)],
            )
            .await;
    }
    Ok((counts.total() > 0).then_some(counts))
}
