//! The seam between the serving layer and the feedback engine's domain: the one module that
//! names the domain's types (item validation, configuration, analysis, tiers and modes), so the
//! service, routes, handlers and CLI speak only this module's small vocabulary.
//!

use serde::Serialize;
use serde_json::{Map, Value};

/// The processing tiers of seed 004's `PROCESSING_TIERS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Analysed inline, in the request.
    Realtime,
    /// Queued, 1 s budget.
    Priority,
    /// Queued, 10 s budget.
    Standard,
    /// Queued, 60 s budget.
    Batch,
}

impl Tier {
    /// Every tier, most urgent first.
    pub const ALL: [Tier; 4] = [Tier::Realtime, Tier::Priority, Tier::Standard, Tier::Batch];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Realtime => "realtime",
            Tier::Priority => "priority",
            Tier::Standard => "standard",
            Tier::Batch => "batch",
        }
    }

    /// The tier named `name`.
    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The seed's `max_latency_ms`.
    pub fn max_latency_ms(self) -> u64 {
        [100, 1_000, 10_000, 60_000][self as usize]
    }

    /// The seed's `queue_priority`.
    pub fn queue_priority(self) -> u32 {
        [1_000, 100, 10, 1][self as usize]
    }

    /// The seed's `timeout_ms`.
    pub fn timeout_ms(self) -> u64 {
        [200, 2_000, 20_000, 300_000][self as usize]
    }

    /// The seed's `retry_count`.
    pub fn retry_count(self) -> u32 {
        [0, 1, 3, 5][self as usize]
    }
}

/// The processing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Full checks, human review flag.
    Research,
    /// Fast path inline, full checks asynchronously.
    Production,
    /// Full checks when risky or when the tier demands it; fast path under load.
    Hybrid,
}

impl Mode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Research => "research",
            Mode::Production => "production",
            Mode::Hybrid => "hybrid",
        }
    }

    /// The mode named `name`.
    pub fn parse(name: &str) -> Option<Mode> {
        [Mode::Research, Mode::Production, Mode::Hybrid]
            .into_iter()
            .find(|m| m.as_str() == name)
    }
}

/// Which path an item takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Every check now.
    Full,
    /// PII, toxicity and risk now; the policy checks later.
    Fast,
}

impl Route {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Full => "full",
            Route::Fast => "fast",
        }
    }
}

/// Hybrid mode takes the fast path when the queues hold more than this (the seed's 10,000).
pub const HYBRID_QUEUE_DEPTH_LIMIT: u64 = 10_000;
/// Hybrid mode runs the full checks above this risk.
pub const HYBRID_RISK_THRESHOLD: f64 = 0.5;

/// A configuration that cannot be used: the path of the offending value and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The TOML path (`policy.weights.HARMLESS`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A field of an item that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's wire name.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A validated feedback item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub id: String,
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub channel: String,
    pub rating: Option<u8>,
    pub text: Option<String>,
    pub locale: Option<String>,
    pub region: Option<String>,
    pub metadata: Map<String, Value>,
    pub occurred_at_ms: i64,
}

/// A PII finding as the API shows it: character offsets into the original text.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PiiView {
    /// Presidio's entity name (`EMAIL_ADDRESS`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// First character (Unicode scalar value) of the finding.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
    pub confidence: f64,
}

/// One principle an item violates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub principle: String,
    pub severity: String,
}

/// What analysing an item found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub findings: Vec<PiiView>,
    pub text_redacted: Option<String>,
    /// VADER compound in `[-1, 1]`.
    pub sentiment: Option<f64>,
    pub toxicity: Value,
    /// The policy's alignment score, when the policy ran.
    pub alignment: Option<f64>,
    pub risk: f64,
    pub violations: Vec<Violation>,
    /// The policy trace, when the policy ran.
    pub trace: Option<Value>,
    /// Whether the policy checks ran (false on the fast path).
    pub full: bool,
    /// Whether a person should look at it (research mode; alignment under the threshold).
    pub needs_review: bool,
}

/// A tenant's feedback engine, built from its configuration: the domain's [`::feedback::analysis::Analyzer`].
#[derive(Debug, Clone)]
pub struct Engine {
    analyzer: ::feedback::analysis::Analyzer,
    mode: Mode,
    default_tier: Tier,
    dual_write: ::feedback::forward::DualWriteConfig,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::from_toml("").unwrap_or_else(|e| {
            // The shipped defaults are tested to load; this is unreachable in a sound build.
            tracing::error!(error = %e, "default feedback configuration does not load");
            std::process::abort()
        })
    }
}

/// The configuration a tenant without one gets (every documented default).
pub const DEFAULT_CONFIG_TOML: &str = "";

fn tier_of(t: ::feedback::routing::Tier) -> Tier {
    Tier::parse(t.as_str()).unwrap_or(Tier::Standard)
}

fn domain_tier(t: Tier) -> ::feedback::routing::Tier {
    ::feedback::routing::Tier::parse(t.as_str()).unwrap_or(::feedback::routing::Tier::Standard)
}

impl Engine {
    /// Builds the engine from a tenant's TOML configuration, validated (errors name the path).
    pub fn from_toml(text: &str) -> Result<Engine, ConfigError> {
        let config = ::feedback::config::FeedbackConfig::parse(text).map_err(|e| ConfigError {
            path: e.path,
            message: e.message,
        })?;
        let analyzer =
            ::feedback::analysis::Analyzer::from_config(&config).map_err(|e| ConfigError {
                path: e.path,
                message: e.message,
            })?;
        let mode = Mode::parse(analyzer.mode().as_str()).unwrap_or(Mode::Hybrid);
        let default_tier = tier_of(analyzer.default_tier());
        Ok(Engine {
            analyzer,
            mode,
            default_tier,
            dual_write: config.dual_write,
        })
    }

    /// The tenant's `[dual_write]` settings (validated).
    pub fn dual_write(&self) -> &::feedback::forward::DualWriteConfig {
        &self.dual_write
    }

    /// The tenant's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The tier of items that name none.
    pub fn default_tier(&self) -> Tier {
        self.default_tier
    }

    /// Validates one item received at `now_ms`; `assigned_id` is its id when it names none.
    pub fn validate(
        &self,
        value: Value,
        assigned_id: &str,
        now_ms: i64,
    ) -> Result<Item, Vec<FieldError>> {
        let raw: ::feedback::item::RawFeedbackItem = match value {
            Value::Object(_) => serde_json::from_value(value).map_err(|e| {
                vec![FieldError {
                    field: "item".to_owned(),
                    message: e.to_string(),
                }]
            })?,
            _ => {
                return Err(vec![FieldError {
                    field: "item".to_owned(),
                    message: "must be a JSON object".to_owned(),
                }])
            }
        };
        let item = ::feedback::item::validate(raw, assigned_id, now_ms).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| FieldError {
                    field: e.field,
                    message: e.message,
                })
                .collect::<Vec<_>>()
        })?;
        Ok(Item {
            id: item.id,
            user_id: item.user_id,
            kind: item.kind.as_str().to_owned(),
            channel: item.channel.as_str().to_owned(),
            rating: item.rating,
            text: item.text,
            locale: item.locale,
            region: item.region,
            metadata: item.metadata,
            occurred_at_ms: item.occurred_at_ms,
        })
    }

    fn domain_item(item: &Item) -> ::feedback::item::FeedbackItem {
        ::feedback::item::FeedbackItem {
            id: item.id.clone(),
            user_id: item.user_id.clone(),
            kind: ::feedback::item::FeedbackKind::parse(&item.kind)
                .unwrap_or(::feedback::item::FeedbackKind::Other),
            channel: ::feedback::item::Channel::parse(&item.channel)
                .unwrap_or(::feedback::item::Channel::Api),
            rating: item.rating,
            text: item.text.clone(),
            locale: item.locale.clone(),
            region: item.region.clone(),
            metadata: item.metadata.clone(),
            occurred_at_ms: item.occurred_at_ms,
            received_at_ms: item.occurred_at_ms,
        }
    }

    /// Every check: PII, toxicity, sentiment, policy, risk.
    pub fn analyze(&self, item: &Item) -> Outcome {
        let domain = Engine::domain_item(item);
        let ctx = ::feedback::analysis::AnalyzeContext {
            force_full_checks: true,
            ..Default::default()
        };
        let a = self.analyzer.analyze(&domain, &ctx);
        let findings = match item.text.as_deref() {
            Some(text) => views(text, &a.findings),
            None => Vec::new(),
        };
        let (alignment, trace, violations, passed) = match &a.policy {
            Some(p) => (
                Some(p.alignment),
                serde_json::to_value(p).ok(),
                p.violations
                    .iter()
                    .map(|v| Violation {
                        principle: v.principle.as_str().to_owned(),
                        severity: v.severity.as_str().to_owned(),
                    })
                    .collect(),
                p.passed,
            ),
            None => (None, None, Vec::new(), true),
        };
        Outcome {
            findings,
            text_redacted: a.text_redacted,
            sentiment: a.sentiment.map(|s| s.compound),
            toxicity: serde_json::to_value(&a.toxicity).unwrap_or(Value::Null),
            alignment,
            risk: a.risk,
            violations,
            trace,
            full: a.policy.is_some(),
            needs_review: a.route.human_review || !passed,
        }
    }

    /// The fast path: PII, toxicity and risk, no policy.
    pub fn quick_check(&self, item: &Item) -> Outcome {
        let domain = Engine::domain_item(item);
        let q = self
            .analyzer
            .quick_check(&domain, &::feedback::analysis::AnalyzeContext::default());
        let findings = match item.text.as_deref() {
            Some(text) => views(text, &q.findings),
            None => Vec::new(),
        };
        Outcome {
            findings,
            text_redacted: q.text_redacted,
            sentiment: item.text.as_deref().map(|t| sentiment::score(t).compound),
            toxicity: serde_json::to_value(&q.toxicity).unwrap_or(Value::Null),
            alignment: None,
            risk: q.risk,
            violations: Vec::new(),
            trace: None,
            full: false,
            needs_review: false,
        }
    }

    /// The route of an item in this tenant's mode, given its fast-path risk and the depth of
    /// the processing queues (the domain's routing table).
    pub fn choose_route(&self, tier: Tier, risk: f64, queue_depth: u64) -> Route {
        let route = ::feedback::routing::route(
            self.analyzer.mode(),
            &::feedback::routing::RouteInputs {
                risk,
                tier: domain_tier(tier),
                queue_depth,
                tier_demands_full: false,
            },
        );
        match route.checks {
            ::feedback::routing::Checks::Full => Route::Full,
            ::feedback::routing::Checks::FastThenAsync => Route::Fast,
        }
    }
}

fn views(text: &str, findings: &[::feedback::pii::Finding]) -> Vec<PiiView> {
    ::feedback::pii::api_findings(text, findings)
        .into_iter()
        .map(|f| PiiView {
            entity_type: f.entity_type,
            start: f.start,
            end: f.end,
            confidence: f64::from(f.confidence),
        })
        .collect()
}
