//! Reads of a tenant's Weber data shared by the API routes and the console: the rules a user id
//! must follow, the per-segment summary, and a segment's users a page at a time. Every read is
//! keyed by the caller's tenant.

use store::{SegmentStats, Store};
use weber::SensitivitySegment;

use crate::problem::ApiError;

/// Longest user id, in characters.
pub(crate) const MAX_USER_ID_CHARS: usize = 256;
/// Largest page of a segment listing.
pub(crate) const PAGE_LIMIT: u32 = 1000;
/// Page size of a segment listing when none is asked for.
pub(crate) const DEFAULT_PAGE: u32 = 100;

/// Whether a user id can be looked up: 1 to 256 characters, no NUL (PostgreSQL text cannot
/// hold one). Characters, not bytes, so the document can state the bound exactly (`maxLength`);
/// ingestion stores at most 256 bytes, so a longer id is simply not found.
pub(crate) fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_USER_ID_CHARS && !id.contains('\0')
}

/// User ids arrive as the `parameter` named; see [`valid_user_id`].
pub(crate) fn check_user_id(parameter: &str, user_id: &str) -> Result<(), ApiError> {
    if !valid_user_id(user_id) {
        return Err(ApiError::invalid_parameter(
            parameter,
            format!("{parameter} must be 1 to {MAX_USER_ID_CHARS} characters, without NUL"),
        ));
    }
    Ok(())
}

/// One segment's line of the summary.
pub(crate) struct SegmentSummary {
    pub segment: &'static str,
    pub users: i64,
    /// This segment's share of all profiled users, 0 to 1.
    pub share: f64,
    pub mean_constant: f64,
    pub std_constant: f64,
    pub mean_confidence: f64,
    pub mean_review_count: f64,
}

/// Every segment, most sensitive first, zeros included, and the total of users.
pub(crate) fn summarise(stats: &[SegmentStats]) -> (i64, Vec<SegmentSummary>) {
    let total_users: i64 = stats.iter().map(|s| s.users).sum();
    let rows = SensitivitySegment::ALL
        .iter()
        .map(|seg| {
            let found = stats.iter().find(|s| s.segment == seg.as_str());
            SegmentSummary {
                segment: seg.as_str(),
                users: found.map_or(0, |s| s.users),
                share: match (found, total_users) {
                    (Some(s), t) if t > 0 => s.users as f64 / t as f64,
                    _ => 0.0,
                },
                mean_constant: found.map_or(0.0, |s| s.mean_constant),
                std_constant: found.map_or(0.0, |s| s.std_constant),
                mean_confidence: found.map_or(0.0, |s| s.mean_confidence),
                mean_review_count: found.map_or(0.0, |s| s.mean_review_count),
            }
        })
        .collect();
    (total_users, rows)
}

/// A page of a segment's users.
pub(crate) struct SegmentPage {
    pub segment: SensitivitySegment,
    /// User ids in order.
    pub users: Vec<String>,
    /// The `after` of the next page; `None` on the last page.
    pub next_after: Option<String>,
}

/// The tenant's users in `segment` after `after`, `limit` (default 100) at a time. An unknown
/// segment is 404 naming the `segment` parameter; a bad `limit` or `after` is 400 naming it.
pub(crate) async fn segment_users(
    store: &Store,
    tenant_id: &str,
    segment: &str,
    after: Option<&str>,
    limit: Option<u32>,
) -> Result<SegmentPage, ApiError> {
    let segment: SensitivitySegment = segment.parse().map_err(|e: weber::UnknownSegment| {
        ApiError::not_found(e.to_string()).with("parameter", "segment")
    })?;
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_parameter(
            "limit",
            format!("limit must be between 1 and {PAGE_LIMIT}"),
        ));
    }
    if let Some(after) = after {
        check_user_id("after", after)?;
    }
    // One more than asked tells whether another page exists.
    let mut users = store
        .weber_segment_users(tenant_id, segment.as_str(), after, limit + 1)
        .await?;
    let next_after = if users.len() > limit as usize {
        users.truncate(limit as usize);
        users.last().cloned()
    } else {
        None
    };
    Ok(SegmentPage {
        segment,
        users,
        next_after,
    })
}

/// Largest page of the calculation audit.
pub(crate) const CALCULATIONS_PAGE_LIMIT: u32 = 1000;

/// A page of one user's calculation audit, newest first.
pub(crate) struct CalculationsPage {
    pub calculations: Vec<store::StoredCalculation>,
    /// The `after` of the next page (the last row's id); `None` on the last page.
    pub next_after: Option<i64>,
}

/// The user's calculation audit rows written before the row `after` (all when `None`), newest
/// first, `limit` (default 100, at most 1000) at a time: the segment listing's cursor paging,
/// with the audit row id as the cursor, so a page never repeats or skips a row while new
/// calculations are written. 404 when the tenant has neither audit rows nor a profile for the
/// user (a user whose rows were all paged past answers an empty page).
pub(crate) async fn calculations_page(
    store: &Store,
    tenant_id: &str,
    user_id: &str,
    after: Option<i64>,
    limit: Option<u32>,
) -> Result<CalculationsPage, ApiError> {
    check_user_id("user_id", user_id)?;
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=CALCULATIONS_PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_parameter(
            "limit",
            format!("limit must be between 1 and {CALCULATIONS_PAGE_LIMIT}"),
        ));
    }
    if after.is_some_and(|a| a < 1) {
        return Err(ApiError::invalid_parameter(
            "after",
            "after must be a positive integer: the previous page's next_after",
        ));
    }
    let mut calculations = store
        .weber_calculations_page(tenant_id, user_id, after, limit + 1)
        .await?;
    if calculations.is_empty()
        && after.is_none()
        && store.weber_profile(tenant_id, user_id).await?.is_none()
    {
        return Err(ApiError::not_found(format!(
            "no Weber calculations for user '{user_id}'"
        )));
    }
    let next_after = if calculations.len() > limit as usize {
        calculations.truncate(limit as usize);
        calculations.last().map(|c| c.id)
    } else {
        None
    };
    Ok(CalculationsPage {
        calculations,
        next_after,
    })
}
