//! The tenant's audit log over HTTP (admin scope): the latest signed checkpoint for witnesses,
//! the public key that verifies it, the records a page at a time, and inclusion and
//! consistency proofs. Hashes are hex; the checkpoint note is the C2SP signed-note text (its
//! root in base64, as that format has it). See docs/audit.md.

use audit::Hash;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use store::Scope;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{ApiQuery, Auth};
use crate::problem::ApiError;
use crate::state::AppState;

/// Records per page unless `limit` says otherwise.
const DEFAULT_PAGE: u32 = 100;
/// Most records per page.
const MAX_PAGE: u32 = 1_000;

/// A signed tree head.
#[derive(Serialize, ToSchema)]
pub(crate) struct CheckpointView {
    /// The log's name: `signalbox/audit/<tenant id>`.
    origin: String,
    /// Records the checkpoint covers.
    size: u64,
    /// Merkle root of those records, hex.
    root: String,
    /// When it was signed, RFC 3339.
    signed_at: String,
    /// The signed note, as witnesses store it and `signalbox audit verify --checkpoint` reads it.
    note: String,
}

/// The key checkpoints are signed with.
#[derive(Serialize, ToSchema)]
pub(crate) struct PublicKeyView {
    /// Always `ed25519`.
    algorithm: &'static str,
    /// The 32-byte public key, base64.
    public_key: String,
    /// First 4 bytes of SHA-256 of the public key, hex: the key id in the note's signature.
    key_id: String,
    /// This tenant's log origin.
    origin: String,
}

/// One audit record.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditRecordView {
    seq: u64,
    /// RFC 3339.
    at: String,
    at_ms: i64,
    item_id: String,
    event: String,
    actor: String,
    /// SHA-256 of the event's detail JSON, hex.
    detail_hash: String,
    /// RFC 6962 leaf hash of the record's canonical encoding, hex.
    leaf_hash: String,
}

/// A page of records.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditRecordsView {
    records: Vec<AuditRecordView>,
    /// `from` of the next page, when the log goes on.
    next_from: Option<u64>,
    /// Records in the log now.
    size: u64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecordsParams {
    /// First record's seq [default: 0].
    from: Option<u64>,
    /// Page size, 1 to 1000 [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// A proof that a record is in the log.
#[derive(Serialize, ToSchema)]
pub(crate) struct InclusionProofView {
    seq: u64,
    /// The tree size the proof is for.
    size: u64,
    /// The record's leaf hash, hex.
    leaf_hash: String,
    /// The root of the tree of `size` records, hex.
    root: String,
    /// The audit path, leaf side first, hex (RFC 6962 §2.1.1).
    proof: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InclusionParams {
    /// The record.
    seq: u64,
    /// The tree size [default: the log's size now].
    size: Option<u64>,
}

/// A proof that the log of `from` records is a prefix of the log of `to` records.
#[derive(Serialize, ToSchema)]
pub(crate) struct ConsistencyProofView {
    from: u64,
    to: u64,
    from_root: String,
    to_root: String,
    /// RFC 6962 §2.1.2 proof, hex.
    proof: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyParams {
    /// The earlier tree size [default: 0, the empty tree].
    from: Option<u64>,
    /// The later tree size [default: the log's size now].
    to: Option<u64>,
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

/// The latest signed checkpoint of the tenant's log, signing one first if records were added
/// since the last (admin scope).
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit", security(("api_key" = [])),
    responses(
        (status = 200, body = CheckpointView),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<CheckpointView>, ApiError> {
    auth.require(Scope::Admin)?;
    let tenant = auth.tenant_id();
    let cp = state.custody().checkpoint(tenant).await?;
    Ok(axum::Json(CheckpointView {
        origin: state.custody().origin(tenant),
        size: cp.size,
        root: hex::encode(cp.root),
        signed_at: crate::rfc3339_ms(cp.at_ms),
        note: cp.note,
    }))
}

/// The Ed25519 public key that verifies this server's checkpoints (admin scope).
#[utoipa::path(get, path = "/api/v1/audit/public-key", tag = "audit", security(("api_key" = [])),
    responses(
        (status = 200, body = PublicKeyView),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn public_key(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<PublicKeyView>, ApiError> {
    auth.require(Scope::Admin)?;
    let key = state.custody().verifying_key();
    Ok(axum::Json(PublicKeyView {
        algorithm: "ed25519",
        public_key: crate::custody::public_key_text(&key),
        key_id: hex::encode(audit::key_id(&key)),
        origin: state.custody().origin(auth.tenant_id()),
    }))
}

/// The tenant's audit records in seq order, a page at a time (admin scope).
#[utoipa::path(get, path = "/api/v1/audit/records", tag = "audit", security(("api_key" = [])),
    params(RecordsParams),
    responses(
        (status = 200, body = AuditRecordsView),
        (status = 400, description = "A bad `from` or `limit` (`parameter` names it)", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn records(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<RecordsParams>,
) -> Result<axum::Json<AuditRecordsView>, ApiError> {
    auth.require(Scope::Admin)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_parameter(
            "limit",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let from = params.from.unwrap_or(0);
    if from > i64::MAX as u64 {
        return Err(ApiError::invalid_parameter("from", "from is too large"));
    }
    let tenant = auth.tenant_id();
    let head = state.store().audit_head(tenant).await?;
    let rows = state.store().audit_records(tenant, from, limit).await?;
    let next_from = rows
        .last()
        .map(|r| r.record.seq + 1)
        .filter(|next| *next < head.size && rows.len() as u32 == limit);
    Ok(axum::Json(AuditRecordsView {
        records: rows
            .into_iter()
            .map(|r| AuditRecordView {
                seq: r.record.seq,
                at: crate::rfc3339_ms(r.record.at_ms),
                at_ms: r.record.at_ms,
                item_id: r.record.item_id,
                event: r.record.event,
                actor: r.record.actor,
                detail_hash: hex::encode(r.record.detail_hash),
                leaf_hash: hex::encode(r.leaf_hash),
            })
            .collect(),
        next_from,
        size: head.size,
    }))
}

/// Resolves an optional tree size against the head: at most the log's size now.
async fn tree_size(
    state: &AppState,
    tenant: &str,
    parameter: &str,
    asked: Option<u64>,
) -> Result<u64, ApiError> {
    let head = state.store().audit_head(tenant).await?;
    match asked {
        None => Ok(head.size),
        Some(size) if size <= head.size => Ok(size),
        Some(size) => Err(ApiError::invalid_parameter(
            parameter,
            format!(
                "{parameter} {size} is beyond the log, which has {} records",
                head.size
            ),
        )),
    }
}

/// Leaf hashes of the first `size` records; hashing runs off the async threads.
async fn leaves(state: &AppState, tenant: &str, size: u64) -> Result<Vec<Hash>, ApiError> {
    Ok(state.store().audit_leaf_hashes(tenant, size).await?)
}

/// Proof that record `seq` is in the tree of `size` records (admin scope).
#[utoipa::path(get, path = "/api/v1/audit/proofs/inclusion", tag = "audit", security(("api_key" = [])),
    params(InclusionParams),
    responses(
        (status = 200, body = InclusionProofView),
        (status = 400, description = "`seq` not below `size`, or `size` beyond the log", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 404, description = "No record `seq` in the log (without `size`)", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn inclusion_proof(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<InclusionParams>,
) -> Result<axum::Json<InclusionProofView>, ApiError> {
    auth.require(Scope::Admin)?;
    let tenant = auth.tenant_id();
    let size = tree_size(&state, tenant, "size", params.size).await?;
    if params.size.is_none() && params.seq >= size {
        return Err(ApiError::not_found(format!(
            "record {} is not in your log, which has {size} records",
            params.seq
        )));
    }
    if params.seq >= size {
        return Err(ApiError::invalid_parameter(
            "seq",
            format!("seq {} is not in a tree of {size} records", params.seq),
        ));
    }
    let leaves = leaves(&state, tenant, size).await?;
    let seq = params.seq;
    let view = tokio::task::spawn_blocking(move || {
        let proof = audit::inclusion_proof(seq, &leaves).map_err(|e| e.to_string())?;
        Ok::<_, String>(InclusionProofView {
            seq,
            size,
            leaf_hash: hex::encode(leaves[seq as usize]),
            root: hex::encode(audit::root_of(&leaves)),
            proof: hexes(&proof),
        })
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| ApiError::invalid_parameter("seq", e))?;
    Ok(axum::Json(view))
}

/// Proof that the log of `from` records is a prefix of the log of `to` records (admin scope).
#[utoipa::path(get, path = "/api/v1/audit/proofs/consistency", tag = "audit", security(("api_key" = [])),
    params(ConsistencyParams),
    responses(
        (status = 200, body = ConsistencyProofView),
        (status = 400, description = "`from` above `to`, or `to` beyond the log", content_type = "application/problem+json", body = crate::openapi::Problem),
        (status = 403, description = "The key lacks the admin scope", content_type = "application/problem+json", body = crate::openapi::Problem),
    ))]
pub(crate) async fn consistency_proof(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ConsistencyParams>,
) -> Result<axum::Json<ConsistencyProofView>, ApiError> {
    auth.require(Scope::Admin)?;
    let tenant = auth.tenant_id();
    let to = tree_size(&state, tenant, "to", params.to).await?;
    let from = params.from.unwrap_or(0);
    if from > to {
        return Err(ApiError::invalid_parameter(
            "from",
            format!("from {from} is above to {to}"),
        ));
    }
    let leaves = leaves(&state, tenant, to).await?;
    let view = tokio::task::spawn_blocking(move || {
        let proof = audit::consistency_proof(from, &leaves).map_err(|e| e.to_string())?;
        Ok::<_, String>(ConsistencyProofView {
            from,
            to,
            from_root: hex::encode(audit::root_of(&leaves[..from as usize])),
            to_root: hex::encode(audit::root_of(&leaves)),
            proof: hexes(&proof),
        })
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| ApiError::invalid_parameter("from", e))?;
    Ok(axum::Json(view))
}
