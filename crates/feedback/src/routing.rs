//! Processing tiers, modes, the risk score and the routing decision.
//!
//! # Tiers
//!
//! [`Tier`] carries seed 004's `PROCESSING_TIERS` table ([`Tier::settings`]).
//!
//! # Modes
//!
//! - **research**: full checks on every item, differential-privacy ε = 0.1 for analytics,
//!   human review flagged on every item (the seed's `require_human_review: True`);
//! - **production**: the fast path (PII, toxicity, risk) inline, the full policy checks
//!   asynchronously;
//! - **hybrid**: full checks when the risk is above 0.5 or the tier demands them; the fast path
//!   otherwise, and always when the queue is deeper than 10,000 (the seed's "force production
//!   mode if backed up"), which wins over both. Human review is flagged when full checks were
//!   chosen for risk.
//!
//! # Risk
//!
//! From quick signals only (no policy), as a noisy-OR `risk = 1 − Π (1 − s_i)` of:
//!
//! | signal | `s_i` |
//! | --- | --- |
//! | PII found | 0.6 |
//! | toxicity score | the score itself |
//! | most severe toxicity match | critical 0.6, high 0.3, medium 0.1, low 0 |
//! | hidden text (zero-width, bidi controls) | 0.6 |
//! | extreme rating (1 or 5) | 0.1 |
//! | text longer than 2,000 characters | 0.1 (0.2 above 5,000) |
//!
//! So PII, hidden text, one high-severity term or a critical one each put an item above 0.5
//! on their own; an extreme rating or a long text only adds to other signals.
//!
//! ```
//! use feedback::routing::{route, Checks, Mode, RouteInputs, Tier};
//! let inputs = RouteInputs { risk: 0.7, tier: Tier::Standard, queue_depth: 12_000, tier_demands_full: false };
//! assert_eq!(route(Mode::Hybrid, &inputs).checks, Checks::FastThenAsync);
//! assert_eq!(route(Mode::Research, &inputs).checks, Checks::Full);
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::severity::Severity;

/// A processing tier of seed 004.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Processed inline with the request.
    Realtime,
    /// Queued, first.
    Priority,
    /// Queued.
    Standard,
    /// Queued, last.
    Batch,
}

/// One row of the seed's `PROCESSING_TIERS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TierSettings {
    /// The latency budget from receipt to processed.
    pub max_latency_ms: u64,
    /// The queue priority (higher first).
    pub queue_priority: u32,
    /// The processing timeout per attempt.
    pub timeout_ms: u64,
    /// Retries after a failed attempt.
    pub retry_count: u32,
}

impl Tier {
    /// Every tier, fastest first.
    pub const ALL: [Tier; 4] = [Tier::Realtime, Tier::Priority, Tier::Standard, Tier::Batch];

    /// The seed's settings of the tier.
    pub fn settings(self) -> TierSettings {
        let (max_latency_ms, queue_priority, timeout_ms, retry_count) = match self {
            Tier::Realtime => (100, 1000, 200, 0),
            Tier::Priority => (1_000, 100, 2_000, 1),
            Tier::Standard => (10_000, 10, 20_000, 3),
            Tier::Batch => (60_000, 1, 300_000, 5),
        };
        TierSettings {
            max_latency_ms,
            queue_priority,
            timeout_ms,
            retry_count,
        }
    }

    /// The name in configuration, requests and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Realtime => "realtime",
            Tier::Priority => "priority",
            Tier::Standard => "standard",
            Tier::Batch => "batch",
        }
    }

    /// The tier of a name.
    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A processing mode of seed 004.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Full checks, privacy-preserving analytics, human review.
    Research,
    /// Fast path, checks asynchronous.
    Production,
    /// Full checks by risk and tier, fast path under load.
    Hybrid,
}

/// What a mode implies besides routing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModeSettings {
    /// The policy threshold (research 0.8 from the seed; production 0.6 and hybrid 0.7 ours).
    pub threshold: f64,
    /// Differential-privacy ε for analytics, if the mode uses it (research: 0.1).
    pub dp_epsilon: Option<f64>,
    /// Whether every item is flagged for human review.
    pub human_review: bool,
}

impl Mode {
    /// The name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Research => "research",
            Mode::Production => "production",
            Mode::Hybrid => "hybrid",
        }
    }

    /// The mode's defaults.
    pub fn settings(self) -> ModeSettings {
        match self {
            Mode::Research => ModeSettings {
                threshold: 0.8,
                dp_epsilon: Some(0.1),
                human_review: true,
            },
            Mode::Production => ModeSettings {
                threshold: 0.6,
                dp_epsilon: None,
                human_review: false,
            },
            Mode::Hybrid => ModeSettings {
                threshold: 0.7,
                dp_epsilon: None,
                human_review: false,
            },
        }
    }

    /// The mode's default principle weights.
    pub fn weights(self) -> crate::policy::PrincipleWeights {
        use crate::policy::PrincipleWeights;
        match self {
            Mode::Research => PrincipleWeights::research(),
            Mode::Production => PrincipleWeights::production(),
            Mode::Hybrid => PrincipleWeights::hybrid(),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hybrid mode chooses full checks above this risk (seed: `risk_score > 0.5`).
pub const HYBRID_RISK_THRESHOLD: f64 = 0.5;
/// Hybrid mode takes the fast path when the queue is deeper than this (seed: 10,000).
pub const HYBRID_MAX_QUEUE_DEPTH: u64 = 10_000;

/// The quick signals the risk score is made of.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RiskSignals {
    /// Whether PII was found.
    pub pii_found: bool,
    /// The toxicity score.
    pub toxicity_score: f64,
    /// The most severe toxicity match.
    pub max_severity: Option<Severity>,
    /// Whether zero-width characters or bidi controls are in the text.
    pub hidden_text: bool,
    /// The item's rating.
    pub rating: Option<u8>,
    /// Length of the text in characters.
    pub text_chars: usize,
}

/// The risk score in `[0, 1]` (see the module docs for the formula).
pub fn risk_score(s: &RiskSignals) -> f64 {
    let severity = match s.max_severity {
        Some(Severity::Critical) => 0.6,
        Some(Severity::High) => 0.3,
        Some(Severity::Medium) => 0.1,
        Some(Severity::Low) | None => 0.0,
    };
    let length = match s.text_chars {
        0..=2_000 => 0.0,
        2_001..=5_000 => 0.1,
        _ => 0.2,
    };
    let signals = [
        if s.pii_found { 0.6 } else { 0.0 },
        s.toxicity_score.clamp(0.0, 1.0),
        severity,
        if s.hidden_text { 0.6 } else { 0.0 },
        if matches!(s.rating, Some(1 | 5)) {
            0.1
        } else {
            0.0
        },
        length,
    ];
    let keep: f64 = signals.iter().map(|s| 1.0 - s).product();
    (1.0 - keep).clamp(0.0, 1.0)
}

/// Which checks an item gets now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checks {
    /// PII, toxicity, risk and the full policy now.
    Full,
    /// PII, toxicity and risk now; the policy later, asynchronously.
    FastThenAsync,
}

/// Why a route was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteReason {
    /// Research mode checks everything.
    ResearchMode,
    /// Production mode takes the fast path.
    ProductionMode,
    /// Hybrid mode under load: queue deeper than 10,000.
    QueueBackedUp,
    /// Hybrid mode: risk above 0.5.
    HighRisk,
    /// Hybrid mode: the tier demands full checks.
    TierDemandsFull,
    /// Hybrid mode: low risk.
    LowRisk,
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteReason::ResearchMode => "research mode checks every item fully",
            RouteReason::ProductionMode => "production mode checks asynchronously",
            RouteReason::QueueBackedUp => "queue deeper than 10,000: fast path",
            RouteReason::HighRisk => "risk above 0.5: full checks",
            RouteReason::TierDemandsFull => "the tier demands full checks",
            RouteReason::LowRisk => "low risk: fast path",
        })
    }
}

/// What routing looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteInputs {
    /// The item's risk score.
    pub risk: f64,
    /// The item's processing tier.
    pub tier: Tier,
    /// Items waiting in the queues now.
    pub queue_depth: u64,
    /// Whether the tenant's configuration demands full checks for this tier.
    pub tier_demands_full: bool,
}

/// The routing decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Route {
    /// Which checks now.
    pub checks: Checks,
    /// Whether a person should review the item.
    pub human_review: bool,
    /// Differential-privacy ε for analytics of this item, if any.
    pub dp_epsilon: Option<f64>,
    /// Why.
    pub reason: RouteReason,
}

/// Routes an item (see the module docs).
pub fn route(mode: Mode, inputs: &RouteInputs) -> Route {
    let settings = mode.settings();
    let (checks, reason) = match mode {
        Mode::Research => (Checks::Full, RouteReason::ResearchMode),
        Mode::Production => (Checks::FastThenAsync, RouteReason::ProductionMode),
        Mode::Hybrid if inputs.queue_depth > HYBRID_MAX_QUEUE_DEPTH => {
            (Checks::FastThenAsync, RouteReason::QueueBackedUp)
        }
        Mode::Hybrid if inputs.risk > HYBRID_RISK_THRESHOLD => {
            (Checks::Full, RouteReason::HighRisk)
        }
        Mode::Hybrid if inputs.tier_demands_full => (Checks::Full, RouteReason::TierDemandsFull),
        Mode::Hybrid => (Checks::FastThenAsync, RouteReason::LowRisk),
    };
    Route {
        checks,
        human_review: settings.human_review
            || (mode == Mode::Hybrid && inputs.risk > HYBRID_RISK_THRESHOLD),
        dp_epsilon: settings.dp_epsilon,
        reason,
    }
}
