//! A tenant's API keys as a use case: minting, listing and revoking, with the rules the API,
//! the console and any other caller share (admin only; a key mints only keys it could use
//! itself; the last admin key stays; a revocation takes effect at once on this replica).

use store::{ApiKeyInfo, IssuedKey, NewKey, Principal, Scope, Scopes};

use crate::extract::forget_cached_keys;
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// What a new key should hold.
pub(crate) struct KeyRequest<'a> {
    pub scopes: Scopes,
    pub label: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

/// 403 unless `caller` holds the admin scope, which every key operation needs.
fn require_admin(caller: &Principal) -> Result<(), ApiError> {
    if caller.scopes.allows(Scope::Admin) {
        Ok(())
    } else {
        Err(ApiError::new(
            ProblemKind::Forbidden,
            format!(
                "this API key lacks the `admin` scope (it has: {})",
                caller.scopes
            ),
        )
        .with("required_scope", Scope::Admin.as_str()))
    }
}

/// Mints a key for the caller's tenant. Refused (403) when the caller is not admin, or when it
/// asks for a scope it does not hold itself (admin does not imply `read_clear`, so only a key
/// holding `read_clear` may hand it on).
pub(crate) async fn create(
    state: &AppState,
    caller: &Principal,
    request: KeyRequest<'_>,
) -> Result<IssuedKey, ApiError> {
    require_admin(caller)?;
    if !caller.scopes.covers(request.scopes) {
        let missing: Scopes = request
            .scopes
            .iter()
            .filter(|s| !caller.scopes.allows(*s))
            .collect();
        return Err(ApiError::new(
            ProblemKind::Forbidden,
            format!(
                "a key may only create keys whose scopes it holds itself; this key lacks: {missing}"
            ),
        )
        .with("missing_scopes", missing.to_string()));
    }
    Ok(state
        .store()
        .issue_key(
            &caller.tenant.id,
            NewKey {
                scopes: request.scopes,
                label: request.label,
                user_id: request.user_id,
            },
        )
        .await?)
}

/// The caller's tenant's keys, newest first, revoked ones included.
pub(crate) async fn list(
    state: &AppState,
    caller: &Principal,
) -> Result<Vec<ApiKeyInfo>, ApiError> {
    require_admin(caller)?;
    Ok(state.store().list_api_keys(&caller.tenant.id).await?)
}

/// Revokes one of the caller's tenant's keys (another tenant's is 404) and forgets cached
/// authentications so it stops working at once. The last active admin key is refused (409).
pub(crate) async fn revoke(
    state: &AppState,
    caller: &Principal,
    key_id: &str,
) -> Result<ApiKeyInfo, ApiError> {
    require_admin(caller)?;
    let key = state
        .store()
        .revoke_api_key(&caller.tenant.id, key_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no API key '{key_id}' in this tenant")))?;
    forget_cached_keys(state);
    Ok(key)
}
