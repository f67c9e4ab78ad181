//! Differentially private feedback analytics and the per-tenant privacy budget ledger: the one
//! place for these use cases, called by the HTTP routes, the command line and the research
//! report.
//!
//! ```text
//! POST /api/v1/feedback/analytics ─▶ validate (tenant's [privacy] + mode) ─▶ load rows (no text)
//!   ─▶ privacy: cap, group, noise (OsRng) ─▶ PrivacyLedger::spend (one conditional UPDATE +
//!   ledger row, one transaction) ─▶ answered; or refused: the noisy answer is discarded
//! ```
//!
//! Nothing unrecorded is ever returned: the answer leaves only after its spend committed.

use feedback::config::FeedbackConfig;
use feedback::item::{Channel, FeedbackKind, FieldError};
use feedback::policy::Principle;
use feedback::private_analytics::{self as pa, Query, QueryRequest, Release, Row};
use privacy::budget::{Budget, Period, Spend};
use privacy::{Delta, Epsilon};
use serde::Serialize;
use serde_json::Value;
use store::{
    NewPrivacyRelease, PrivacyBudgetRecord, PrivacyLimit, PrivacySpendOutcome, Store, StoreError,
};
use utoipa::ToSchema;

use crate::state::AppState;

/// Most feedback items one query may read; a larger window is refused (narrow it).
pub const MAX_ANALYTICS_ROWS: u32 = 500_000;

/// What a release is, in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseKind {
    /// An analytics query.
    Query,
    /// A research report.
    Report,
}

impl ReleaseKind {
    /// The ledger's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseKind::Query => "query",
            ReleaseKind::Report => "report",
        }
    }
}

/// A tenant's budget in the current period: the totals, what is spent and what is left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetState {
    /// The budget (the stored one, or [`Budget::DEFAULT`]).
    pub budget: Budget,
    /// Whether the tenant set it (false: the default applies).
    pub configured: bool,
    /// The current period's first millisecond (UTC).
    pub period_start_ms: i64,
    /// The first millisecond after it.
    pub period_end_ms: i64,
    /// Spent in the period.
    pub spent: Spend,
}

impl BudgetState {
    /// What is left in the period.
    pub fn remaining(&self) -> Spend {
        self.budget.remaining(self.spent)
    }
}

/// Why a spend did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Not enough budget left; nothing was recorded.
    #[error("privacy budget exhausted: {remaining_epsilon} epsilon and {remaining_delta:e} delta remain until the period ends")]
    Exhausted {
        /// The budget as it stands.
        state: BudgetState,
        /// What was asked.
        requested: Spend,
        /// ε left (for the message).
        remaining_epsilon: f64,
        /// δ left.
        remaining_delta: f64,
    },
    /// Bad input (the query JSON too long, a bad actor).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LedgerError> for crate::problem::ApiError {
    /// A refusal is 403 `privacy_budget_exhausted` naming what is left, what was asked and
    /// when the period ends; the analytics route and the report route answer it alike.
    fn from(e: LedgerError) -> Self {
        use crate::problem::{ApiError, ProblemKind};
        let detail = e.to_string();
        match e {
            LedgerError::Exhausted {
                state,
                requested,
                remaining_epsilon,
                remaining_delta,
            } => ApiError::new(ProblemKind::PrivacyBudgetExhausted, detail)
                .with("remaining_epsilon", remaining_epsilon)
                .with("remaining_delta", remaining_delta)
                .with("requested_epsilon", requested.epsilon.as_f64())
                .with("requested_delta", requested.delta.as_f64())
                .with("period_end", crate::rfc3339_ms(state.period_end_ms)),
            LedgerError::Store(e) => e.into(),
            LedgerError::Invalid(_) => ApiError::new(ProblemKind::Unprocessable, detail),
        }
    }
}

/// The privacy budget ledger of every tenant.
#[derive(Debug, Clone)]
pub struct PrivacyLedger {
    store: Store,
}

fn budget_of(record: Option<PrivacyBudgetRecord>) -> (Budget, bool) {
    match record {
        Some(r) => match Period::parse(&r.period) {
            Some(period) => (
                Budget {
                    period,
                    epsilon: Epsilon::from_nanos(u64::try_from(r.epsilon_nanos).unwrap_or(0)),
                    delta: Delta::from_femtos(u64::try_from(r.delta_femtos).unwrap_or(0)),
                },
                true,
            ),
            None => {
                tracing::warn!(
                    period = r.period,
                    "stored privacy budget has an unknown period; using the default"
                );
                (Budget::DEFAULT, false)
            }
        },
        None => (Budget::DEFAULT, false),
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn spend_of(spent: store::PrivacySpent) -> Spend {
    Spend {
        epsilon: Epsilon::from_nanos(u64::try_from(spent.epsilon_nanos).unwrap_or(0)),
        delta: Delta::from_femtos(u64::try_from(spent.delta_femtos).unwrap_or(0)),
    }
}

impl PrivacyLedger {
    /// The ledger over `store`.
    pub fn new(store: Store) -> PrivacyLedger {
        PrivacyLedger { store }
    }

    /// The tenant's budget and its state in the period holding `now_ms`.
    pub async fn state(&self, tenant_id: &str, now_ms: i64) -> Result<BudgetState, StoreError> {
        let (budget, configured) = budget_of(self.store.privacy_budget(tenant_id).await?);
        let period_start_ms = budget.period.start_ms(now_ms);
        let spent = spend_of(self.store.privacy_spent(tenant_id, period_start_ms).await?);
        Ok(BudgetState {
            budget,
            configured,
            period_start_ms,
            period_end_ms: budget.period.end_ms(now_ms),
            spent,
        })
    }

    /// Sets the tenant's budget (`actor`: the API key id or `cli`); what the current period
    /// spent stays spent.
    pub async fn put_budget(
        &self,
        tenant_id: &str,
        budget: Budget,
        actor: &str,
        now_ms: i64,
    ) -> Result<BudgetState, StoreError> {
        self.store
            .put_privacy_budget(
                tenant_id,
                &PrivacyBudgetRecord {
                    period: budget.period.as_str().to_owned(),
                    epsilon_nanos: signed(budget.epsilon.nanos()),
                    delta_femtos: signed(budget.delta.femtos()),
                    updated_at_ms: now_ms,
                    updated_by: actor.to_owned(),
                },
            )
            .await?;
        self.state(tenant_id, now_ms).await
    }

    /// Spends `spend` from the tenant's current period and records the release, atomically:
    /// refused ([`LedgerError::Exhausted`]) when it does not fit, with nothing recorded.
    pub async fn spend(
        &self,
        tenant_id: &str,
        actor: &str,
        kind: ReleaseKind,
        query_json: &Value,
        spend: Spend,
    ) -> Result<BudgetState, LedgerError> {
        self.spend_at(
            tenant_id,
            actor,
            kind,
            query_json,
            spend,
            crate::jobs::now_ms(),
        )
        .await
        .map(|(state, _)| state)
    }

    /// [`PrivacyLedger::spend`] at `now_ms`; also answers the ledger row's id.
    pub async fn spend_at(
        &self,
        tenant_id: &str,
        actor: &str,
        kind: ReleaseKind,
        query_json: &Value,
        spend: Spend,
        now_ms: i64,
    ) -> Result<(BudgetState, i64), LedgerError> {
        let (budget, configured) = budget_of(self.store.privacy_budget(tenant_id).await?);
        let period_start_ms = budget.period.start_ms(now_ms);
        let query = query_json.to_string();
        if query.len() > store::MAX_PRIVACY_QUERY_BYTES {
            return Err(LedgerError::Invalid(format!(
                "the release's description is over {} bytes",
                store::MAX_PRIVACY_QUERY_BYTES
            )));
        }
        let outcome = self
            .store
            .spend_privacy(
                tenant_id,
                &NewPrivacyRelease {
                    period_start_ms,
                    released_at_ms: now_ms,
                    actor,
                    kind: kind.as_str(),
                    query: &query,
                    epsilon_nanos: signed(spend.epsilon.nanos()),
                    delta_femtos: signed(spend.delta.femtos()),
                },
                PrivacyLimit {
                    epsilon_nanos: signed(budget.epsilon.nanos()),
                    delta_femtos: signed(budget.delta.femtos()),
                },
            )
            .await
            .map_err(|e| match e {
                StoreError::Invalid { field, reason } => {
                    LedgerError::Invalid(format!("{field}: {reason}"))
                }
                e => LedgerError::Store(e),
            })?;
        let state = |spent| BudgetState {
            budget,
            configured,
            period_start_ms,
            period_end_ms: budget.period.end_ms(now_ms),
            spent: spend_of(spent),
        };
        match outcome {
            PrivacySpendOutcome::Spent { ledger_id, spent } => Ok((state(spent), ledger_id)),
            PrivacySpendOutcome::Refused { spent } => {
                let state = state(spent);
                let remaining = state.remaining();
                Err(LedgerError::Exhausted {
                    state,
                    requested: spend,
                    remaining_epsilon: remaining.epsilon.as_f64(),
                    remaining_delta: remaining.delta.as_f64(),
                })
            }
        }
    }

    /// A page of the current period's ledger, newest first (below `before_id` when given).
    pub async fn ledger(
        &self,
        tenant_id: &str,
        period_start_ms: i64,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = self
            .store
            .privacy_ledger(tenant_id, period_start_ms, before_id, limit)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| LedgerEntry {
                id: r.id,
                released_at: crate::rfc3339_ms(r.released_at_ms),
                actor: r.actor,
                kind: r.kind,
                query: serde_json::from_str(&r.query).unwrap_or(Value::Null),
                epsilon: Epsilon::from_nanos(u64::try_from(r.epsilon_nanos).unwrap_or(0)).as_f64(),
                delta: Delta::from_femtos(u64::try_from(r.delta_femtos).unwrap_or(0)).as_f64(),
            })
            .collect())
    }
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = PrivacyLedgerEntry)]
pub struct LedgerEntry {
    /// The row's id (page with `before`).
    pub id: i64,
    /// When it was released (RFC 3339).
    pub released_at: String,
    /// The API key id (or `cli`, or the report's author) that spent it.
    pub actor: String,
    /// `query` or `report`.
    #[schema(pattern = "^(query|report)$")]
    pub kind: String,
    /// What was released (metric, grouping, window, mechanism); never data.
    #[schema(value_type = Object)]
    pub query: Value,
    /// ε spent.
    pub epsilon: f64,
    /// δ spent.
    pub delta: f64,
}

/// Why an analytics query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// Bad fields (each named).
    #[error("invalid query")]
    Invalid(Vec<FieldError>),
    /// The window holds more items than one query may read.
    #[error("the window holds more than {MAX_ANALYTICS_ROWS} feedback items; narrow it")]
    TooManyRows,
    /// The budget is spent (the noisy answer was discarded).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The noise could not be calibrated.
    #[error(transparent)]
    Calibration(#[from] pa::AnalyticsError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An answered query: the release, the ledger row and the budget left.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The noisy release.
    pub release: Release,
    /// The ledger row recording it.
    pub ledger_id: i64,
    /// The budget after it.
    pub budget: BudgetState,
}

/// The tenant's feedback configuration (stored or default).
pub async fn tenant_config(store: &Store, tenant_id: &str) -> Result<FeedbackConfig, StoreError> {
    Ok(match store.feedback_config(tenant_id).await? {
        Some(stored) => FeedbackConfig::parse(&stored.config).unwrap_or_else(|e| {
            tracing::warn!(tenant_id, error = %e, "stored feedback configuration no longer valid; using defaults");
            FeedbackConfig::default()
        }),
        None => FeedbackConfig::default(),
    })
}

/// The rows of the tenant's items in the query's window, for the pure analytics.
pub async fn load_rows(
    store: &Store,
    tenant_id: &str,
    query: &Query,
) -> Result<Vec<Row>, AnalyticsError> {
    let stored = store
        .privacy_analytics_rows(
            tenant_id,
            query.from_ms,
            query.to_ms,
            MAX_ANALYTICS_ROWS + 1,
        )
        .await?;
    if stored.len() > MAX_ANALYTICS_ROWS as usize {
        return Err(AnalyticsError::TooManyRows);
    }
    Ok(stored
        .into_iter()
        .map(|r| Row {
            id: r.id,
            person: r.user_id,
            occurred_at_ms: r.occurred_ms,
            kind: FeedbackKind::parse(&r.kind).unwrap_or(FeedbackKind::Other),
            channel: r.channel.as_deref().map_or(Channel::Api, |c| {
                Channel::parse(c).unwrap_or(Channel::Other)
            }),
            region: r.region,
            segment: r.segment,
            rating: r
                .rating
                .and_then(|x| u8::try_from(x).ok())
                .filter(|x| (1..=5).contains(x)),
            sentiment: r.sentiment,
            alignment: r.alignment,
            violations: r
                .violations
                .as_deref()
                .unwrap_or("")
                .split(',')
                .filter_map(|p| Principle::ALL.into_iter().find(|x| x.as_str() == p))
                .collect(),
            text_chars: r.text_chars.and_then(|n| u32::try_from(n).ok()),
        })
        .collect())
}

/// Answers an analytics request for the tenant (`actor`: the API key id or `cli`): validates it
/// against the tenant's `[privacy]` section and mode, computes the noisy release, then spends
/// its ε and δ. A refused spend discards the release. Counts `privacy_releases_total`.
pub async fn answer_query(
    state: &AppState,
    tenant_id: &str,
    actor: &str,
    request: &QueryRequest,
    now_ms: i64,
) -> Result<Answered, AnalyticsError> {
    let store = state.store();
    let config = tenant_config(store, tenant_id).await?;
    let query = Query::from_request(request, &config.privacy, config.mode.0)
        .map_err(AnalyticsError::Invalid)?;
    let ledger = PrivacyLedger::new(store.clone());
    // A cheap early refusal: an exhausted budget costs no row loading. The spend below is what
    // decides under concurrency.
    let current = ledger.state(tenant_id, now_ms).await?;
    let metric = query.metric.as_str();
    if let Err(refusal) = current.budget.check(current.spent, query.spend()) {
        state.metrics().feedback().privacy_release(metric, false);
        return Err(LedgerError::Exhausted {
            state: current,
            requested: query.spend(),
            remaining_epsilon: refusal.remaining.epsilon.as_f64(),
            remaining_delta: refusal.remaining.delta.as_f64(),
        }
        .into());
    }
    let rows = load_rows(store, tenant_id, &query).await?;
    let release = pa::answer(&query, &rows, &config.privacy, &mut rand::rngs::OsRng)?;
    drop(rows);
    match ledger
        .spend_at(
            tenant_id,
            actor,
            ReleaseKind::Query,
            &query.ledger_json(),
            query.spend(),
            now_ms,
        )
        .await
    {
        Ok((budget, ledger_id)) => {
            state.metrics().feedback().privacy_release(metric, true);
            Ok(Answered {
                release,
                ledger_id,
                budget,
            })
        }
        Err(e) => {
            if matches!(e, LedgerError::Exhausted { .. }) {
                state.metrics().feedback().privacy_release(metric, false);
            }
            Err(e.into())
        }
    }
}
