//! `LlmService`: LLM and chatbot observability's use cases, once, for the routes
//! (`/v1/traces`, `/api/v1/llm/*`), the CLI and periodic jobs.
//!
//! Ingest is one path whatever the source (OTLP spans or the JSON event API): validated events →
//! priced with the tenant's [`llm::price::Pricing`] → stored in one transaction (a repeated id
//! changes nothing) → counted in the metrics, for newly stored events only → the month's spend
//! checked against the tenant's budget, each threshold crossing recorded once per period in the
//! store (so a restart or a second replica records nothing twice) and logged once.
//!
//! Reads: usage (from the store's daily rollups, or raw calls when grouped by conversation)
//! behind a response cache whose key is the authenticated tenant, dropped for that tenant on
//! every ingest so a read after a write is exact; conversation timelines; budgets; prices.

pub mod ingest;
pub mod otlp;
pub mod usage;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llm::budget::{self, Period};
use llm::price::{PriceTable, Pricing};
use llm::{Cost, LlmEvent};
use moka::sync::Cache;
use store::{Store, StoreError};
use telemetry::Metrics;

pub use ingest::{EventIngest, SpanIngest};
pub use usage::{UsageAnswer, UsageQuery};

/// Most events one `POST /api/v1/llm/events` may carry; more is 413.
pub const DEFAULT_MAX_EVENTS_PER_REQUEST: usize = 10_000;
/// Most spans one `POST /v1/traces` may carry; more is 413.
pub const DEFAULT_MAX_SPANS_PER_REQUEST: usize = 50_000;
/// Largest LLM ingest body (after gzip is undone), in bytes.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 8 * 1024 * 1024;

/// LLM observability settings; the binary fills them from flags, env and `[llm]`.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// The default price table (shipped, or a file the operator chose).
    pub default_prices: Arc<PriceTable>,
    /// Whether default prices apply at all on this server; a tenant can also switch them off
    /// for itself (`PUT /api/v1/llm/prices`).
    pub default_prices_enabled: bool,
    /// Most events in one `POST /api/v1/llm/events`.
    pub max_events_per_request: usize,
    /// Most spans in one `POST /v1/traces`.
    pub max_spans_per_request: usize,
    /// Largest body of either ingest route, after decompression.
    pub body_limit_bytes: usize,
    /// Raw events older than this many days are purged by [`run_llm_retention`] (daily rollups
    /// stay); `None` keeps everything.
    pub retention_days: Option<u32>,
    /// How long a usage answer may be served from the cache. This server drops a tenant's
    /// answers at once when it ingests for that tenant; ingest through another replica shows
    /// within this time.
    pub usage_cache_ttl: Duration,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            default_prices: shipped_prices(),
            default_prices_enabled: true,
            max_events_per_request: DEFAULT_MAX_EVENTS_PER_REQUEST,
            max_spans_per_request: DEFAULT_MAX_SPANS_PER_REQUEST,
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            retention_days: None,
            usage_cache_ttl: Duration::from_secs(900),
        }
    }
}

/// The shipped price table, parsed once per process.
pub fn shipped_prices() -> Arc<PriceTable> {
    static SHIPPED: std::sync::OnceLock<Arc<PriceTable>> = std::sync::OnceLock::new();
    SHIPPED
        .get_or_init(|| Arc::new(PriceTable::shipped()))
        .clone()
}

/// A tenant's own prices, as stored.
#[derive(Debug, Clone)]
pub struct TenantPrices {
    /// The tenant's overrides (empty when it set none).
    pub overrides: PriceTable,
    /// The overrides as stored (JSON, the price table's shape); empty when none.
    pub overrides_json: String,
    /// Whether the defaults apply to models the overrides do not list.
    pub use_defaults: bool,
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Stored for the first time.
    pub stored: usize,
    /// Already stored (same id): nothing changed.
    pub duplicates: usize,
    /// Per event, in input order: whether it was stored now (else a duplicate).
    pub inserted: Vec<bool>,
}

/// The use cases. Cheap to share (`Arc` inside `AppState`).
pub struct LlmService {
    settings: LlmSettings,
    prices: Cache<String, Arc<TenantPrices>>,
    usage: Cache<(String, u64, UsageQuery), Arc<UsageAnswer>>,
    /// Per tenant, the generation its cached usage answers belong to; bumped on every ingest.
    generations: Cache<String, u64>,
    next_generation: AtomicU64,
}

impl LlmService {
    pub fn new(settings: LlmSettings) -> LlmService {
        LlmService {
            prices: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            usage: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(settings.usage_cache_ttl)
                .build(),
            generations: Cache::builder().max_capacity(100_000).build(),
            next_generation: AtomicU64::new(1),
            settings,
        }
    }

    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    /// The tenant's prices (cached; dropped on [`LlmService::set_prices`]).
    pub async fn tenant_prices(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<Arc<TenantPrices>, StoreError> {
        if let Some(p) = self.prices.get(tenant_id) {
            return Ok(p);
        }
        let stored = store.get_llm_prices(tenant_id).await?;
        let prices = Arc::new(match stored {
            None => TenantPrices {
                overrides: PriceTable::default(),
                overrides_json: String::new(),
                use_defaults: true,
            },
            Some(stored) => TenantPrices {
                // Validated when it was set; a table that no longer parses (a stricter
                // release) prices nothing rather than failing every ingest.
                overrides: parse_overrides(&stored.text).unwrap_or_else(|e| {
                    tracing::warn!(tenant_id, error = %e, "stored price overrides no longer parse; ignoring them");
                    PriceTable::default()
                }),
                overrides_json: stored.text,
                use_defaults: stored.use_defaults,
            },
        });
        self.prices.insert(tenant_id.to_owned(), prices.clone());
        Ok(prices)
    }

    /// Replaces the tenant's price overrides (the price table in JSON; empty for none) and its
    /// defaults switch. The table is validated first: an error names the field.
    pub async fn set_prices(
        &self,
        store: &Store,
        tenant_id: &str,
        overrides_json: &str,
        use_defaults: bool,
    ) -> Result<Arc<TenantPrices>, PricesError> {
        let overrides = parse_overrides(overrides_json).map_err(PricesError::Invalid)?;
        store
            .put_llm_prices(tenant_id, overrides_json, use_defaults)
            .await?;
        let prices = Arc::new(TenantPrices {
            overrides,
            overrides_json: overrides_json.to_owned(),
            use_defaults,
        });
        self.prices.insert(tenant_id.to_owned(), prices.clone());
        Ok(prices)
    }

    /// Prices model calls with the tenant's prices (client costs are kept; they win on read).
    pub fn price(&self, prices: &TenantPrices, events: &mut [LlmEvent]) {
        let pricing = Pricing {
            defaults: &self.settings.default_prices,
            overrides: &prices.overrides,
            use_defaults: prices.use_defaults && self.settings.default_prices_enabled,
        };
        for event in events {
            if let LlmEvent::ModelCall(call) = event {
                call.computed_cost =
                    pricing.cost(&call.provider, &call.model, call.time_ms, &call.tokens);
            }
        }
    }

    /// The ingest use case: prices, stores in one transaction, records metrics for the
    /// newly stored events and checks the budget.
    pub async fn ingest(
        &self,
        store: &Store,
        metrics: &Metrics,
        tenant_id: &str,
        mut events: Vec<LlmEvent>,
        now_ms: i64,
    ) -> Result<IngestOutcome, StoreError> {
        if events.is_empty() {
            return Ok(IngestOutcome::default());
        }
        let prices = self.tenant_prices(store, tenant_id).await?;
        self.price(&prices, &mut events);
        // The store takes model calls and the other kinds apart; remember where each went.
        let mut calls = Vec::new();
        let mut others = Vec::new();
        let mut places = Vec::with_capacity(events.len());
        for event in &events {
            match event {
                LlmEvent::ModelCall(call) => {
                    places.push((true, calls.len()));
                    calls.push(call.clone());
                }
                other => {
                    places.push((false, others.len()));
                    others.push(other.clone());
                }
            }
        }
        let stored = store.insert_llm_batch(tenant_id, &calls, &others).await?;
        // Whatever happens next, cached answers for this tenant are stale now.
        self.invalidate_usage(tenant_id);
        let inserted: Vec<bool> = places
            .iter()
            .map(|&(is_call, i)| {
                let list = if is_call {
                    &stored.calls
                } else {
                    &stored.events
                };
                list.get(i) == Some(&store::LlmInsertion::New)
            })
            .collect();
        let mut outcome = IngestOutcome::default();
        let recorder = metrics.llm();
        let mut spent_now = false;
        for (event, new) in events.iter().zip(&inserted) {
            if *new {
                outcome.stored += 1;
                recorder.record_event(tenant_id, event);
                if let LlmEvent::ModelCall(call) = event {
                    spent_now |= call.cost().is_some_and(|c| c > Cost::ZERO);
                }
            } else {
                outcome.duplicates += 1;
            }
        }
        outcome.inserted = inserted;
        if spent_now {
            self.check_budget(store, metrics, tenant_id, now_ms).await?;
        }
        Ok(outcome)
    }

    /// Compares this month's spend with the budget, records thresholds newly crossed (once per
    /// period, in the store) and updates the budget gauges. Returns the thresholds crossed by
    /// this call.
    pub async fn check_budget(
        &self,
        store: &Store,
        metrics: &Metrics,
        tenant_id: &str,
        now_ms: i64,
    ) -> Result<Vec<u8>, StoreError> {
        let Some(budget) = store.get_llm_budget(tenant_id).await? else {
            return Ok(Vec::new());
        };
        let period = Period::containing(now_ms);
        let spent = store.llm_month_spend(tenant_id, period).await?;
        let reached = budget::reached(budget.monthly, spent, &budget.thresholds);
        let newly = if reached.is_empty() {
            Vec::new()
        } else {
            store
                .record_llm_budget_crossings(tenant_id, period, &reached, spent, now_ms)
                .await?
        };
        for threshold in &newly {
            tracing::warn!(
                tenant_id,
                %period,
                threshold,
                spent_usd = spent.usd(),
                budget_usd = budget.monthly.usd(),
                "LLM budget threshold crossed"
            );
        }
        metrics
            .llm()
            .set_budget(tenant_id, spent_ratio(budget.monthly, spent), &reached);
        Ok(newly)
    }

    /// The tenant's budget, this month's spend and the thresholds crossed this month. Also
    /// sets the budget gauges, so they are current after a restart before the next ingest.
    pub async fn budget_status(
        &self,
        store: &Store,
        metrics: &Metrics,
        tenant_id: &str,
        now_ms: i64,
    ) -> Result<BudgetStatus, StoreError> {
        let period = Period::containing(now_ms);
        let budget = store.get_llm_budget(tenant_id).await?;
        let spent = store.llm_month_spend(tenant_id, period).await?;
        let crossings = store.list_llm_budget_crossings(tenant_id, period).await?;
        if let Some(b) = &budget {
            let reached: Vec<u8> = crossings.iter().map(|c| c.threshold).collect();
            metrics
                .llm()
                .set_budget(tenant_id, spent_ratio(b.monthly, spent), &reached);
        }
        Ok(BudgetStatus {
            budget,
            period,
            spent,
            crossings,
        })
    }

    /// Sets the tenant's monthly budget (dollars, 0 to [`Cost::MAX_USD`]) and thresholds
    /// (`None`: [`budget::DEFAULT_THRESHOLDS`]), then checks it at once, so a budget set below
    /// this month's spend records its crossings now.
    pub async fn set_budget(
        &self,
        store: &Store,
        metrics: &Metrics,
        tenant_id: &str,
        monthly_usd: f64,
        thresholds: Option<Vec<u8>>,
        now_ms: i64,
    ) -> Result<BudgetStatus, BudgetSetError> {
        let monthly = Cost::from_usd(monthly_usd).map_err(|_| {
            BudgetSetError::Invalid(budget::BudgetError {
                field: "monthly_usd".into(),
                reason: format!("must be a number of dollars from 0 to {}", Cost::MAX_USD),
            })
        })?;
        let thresholds = match thresholds {
            None => Vec::new(),
            Some(list) if list.is_empty() => {
                return Err(BudgetSetError::Invalid(budget::BudgetError {
                    field: "thresholds".into(),
                    reason: format!(
                        "must list 1 to {} percentages (omit it for {:?})",
                        budget::MAX_THRESHOLDS,
                        budget::DEFAULT_THRESHOLDS
                    ),
                }));
            }
            Some(list) => list,
        };
        let budget = budget::Budget::new(monthly, thresholds).map_err(BudgetSetError::Invalid)?;
        store
            .put_llm_budget(tenant_id, budget.monthly, &budget.thresholds)
            .await?;
        self.check_budget(store, metrics, tenant_id, now_ms).await?;
        Ok(self
            .budget_status(store, metrics, tenant_id, now_ms)
            .await?)
    }

    fn invalidate_usage(&self, tenant_id: &str) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        self.generations.insert(tenant_id.to_owned(), generation);
    }

    fn generation(&self, tenant_id: &str) -> u64 {
        // A tenant with no entry (never ingested here, or evicted) gets a fresh generation, so
        // nothing cached before can match.
        self.generations.get_with(tenant_id.to_owned(), || {
            self.next_generation.fetch_add(1, Ordering::Relaxed)
        })
    }

    /// Usage of one tenant, from the cache when this server has not ingested for the tenant
    /// since the answer was computed. The key holds the authenticated tenant only.
    pub async fn usage(
        &self,
        store: &Store,
        tenant_id: &str,
        query: &UsageQuery,
    ) -> Result<Arc<UsageAnswer>, StoreError> {
        let key = (
            tenant_id.to_owned(),
            self.generation(tenant_id),
            query.clone(),
        );
        if let Some(answer) = self.usage.get(&key) {
            return Ok(answer);
        }
        let answer = Arc::new(usage::compute(store, tenant_id, query).await?);
        self.usage.insert(key, answer.clone());
        Ok(answer)
    }

    /// One conversation's timeline: its first `limit` events in time order and its model calls
    /// summed. `None` when no event of the tenant names the conversation (another tenant's
    /// conversation looks exactly like a missing one).
    pub async fn conversation(
        &self,
        store: &Store,
        tenant_id: &str,
        conversation_id: &str,
        limit: u32,
    ) -> Result<Option<ConversationTimeline>, StoreError> {
        let events = store
            .llm_conversation_timeline(tenant_id, conversation_id, limit)
            .await?;
        if events.is_empty() {
            return Ok(None);
        }
        let mut totals = llm::usage::UsageTotals::default();
        for event in &events {
            if let LlmEvent::ModelCall(call) = event {
                totals.add_call(call);
            }
        }
        Ok(Some(ConversationTimeline { events, totals }))
    }

    /// Deletes raw events older than the retention setting; returns how many went.
    pub async fn purge(&self, store: &Store, now_ms: i64) -> Result<u64, StoreError> {
        let Some(days) = self.settings.retention_days else {
            return Ok(0);
        };
        let before_ms = now_ms - i64::from(days) * 86_400_000;
        let purged = store.purge_llm_events_before(before_ms).await?;
        let removed = purged.calls + purged.events;
        if removed > 0 {
            // Answers grouped by conversation read the raw calls.
            self.usage.invalidate_all();
        }
        Ok(removed)
    }
}

/// Spend over budget for the gauge. A zero budget with any spend is over without bound:
/// the largest finite ratio (the gauge takes no infinity), 0 while nothing is spent.
pub(crate) fn spent_ratio(budget: Cost, spent: Cost) -> f64 {
    if budget == Cost::ZERO {
        if spent > Cost::ZERO {
            f64::MAX
        } else {
            0.0
        }
    } else {
        spent.picodollars() as f64 / budget.picodollars() as f64
    }
}

/// A tenant's stored overrides (empty text: none).
fn parse_overrides(json: &str) -> Result<PriceTable, llm::price::PriceError> {
    if json.trim().is_empty() {
        Ok(PriceTable::default())
    } else {
        PriceTable::from_json(json)
    }
}

/// A tenant's budget as it stands this month.
#[derive(Debug, Clone)]
pub struct BudgetStatus {
    /// `None` when the tenant set no budget.
    pub budget: Option<store::LlmBudget>,
    /// The calendar month (UTC) of the answer.
    pub period: Period,
    /// Spent this month: the effective cost of priced calls.
    pub spent: Cost,
    /// Thresholds crossed this month, each recorded once.
    pub crossings: Vec<store::LlmBudgetCrossing>,
}

/// Most events one conversation timeline lists (the first ones, in time order).
pub const MAX_TIMELINE_EVENTS: u32 = 10_000;

/// One conversation's events and the sum of its model calls ([`LlmService::conversation`]).
#[derive(Debug, Clone)]
pub struct ConversationTimeline {
    /// In time order.
    pub events: Vec<LlmEvent>,
    pub totals: llm::usage::UsageTotals,
}

/// Why a budget could not be set.
#[derive(Debug, thiserror::Error)]
pub enum BudgetSetError {
    /// A field breaks a rule; `field` names it.
    #[error(transparent)]
    Invalid(budget::BudgetError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why prices could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PricesError {
    #[error(transparent)]
    Invalid(llm::price::PriceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Purges raw LLM events past the retention every `interval` until `stopped` resolves (the
/// daily rollups, budgets and crossings are kept). Does nothing without a retention setting.
pub async fn run_llm_retention(
    state: crate::AppState,
    interval: Duration,
    stopped: impl std::future::Future<Output = ()>,
) {
    if state.llm().settings().retention_days.is_none() {
        stopped.await;
        return;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = std::pin::pin!(stopped);
    let purge = async {
        loop {
            ticks.tick().await;
            match state.llm().purge(state.store(), now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "LLM events past the retention purged"),
                Err(e) => {
                    tracing::warn!(error = %e, "LLM retention purge failed; retried next tick")
                }
            }
        }
    };
    tokio::select! {
        () = stopped => {}
        () = purge => {}
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
