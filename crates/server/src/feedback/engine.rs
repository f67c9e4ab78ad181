//! The seam between the serving layer and the feedback engine's domain: the one module that
//! names the domain's types (item validation, configuration, analysis, tiers and modes), so the
//! service, routes, handlers and CLI speak only this module's small vocabulary.
//!
//! Until the domain crate's validation and analyzer are available, this module carries a
//! minimal stand-in (the item's fields checked here, sentiment by `sentiment`, no PII findings,
//! no policy); it is replaced wholesale when they are.

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

    fn parse(name: &str) -> Option<Mode> {
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

/// A tenant's feedback engine, built from its configuration.
#[derive(Debug, Clone)]
pub struct Engine {
    mode: Mode,
    default_tier: Tier,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            mode: Mode::Hybrid,
            default_tier: Tier::Standard,
        }
    }
}

/// The configuration a tenant without one gets.
pub const DEFAULT_CONFIG_TOML: &str = "mode = \"hybrid\"\ndefault_tier = \"standard\"\n";

impl Engine {
    /// Builds the engine from a tenant's TOML configuration, validated.
    pub fn from_toml(text: &str) -> Result<Engine, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            path: "".to_owned(),
            message: e.message().to_owned(),
        })?;
        let mut engine = Engine::default();
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("mode", toml::Value::String(s)) => {
                    engine.mode = Mode::parse(s).ok_or_else(|| ConfigError {
                        path: "mode".to_owned(),
                        message: "must be research, production or hybrid".to_owned(),
                    })?
                }
                ("default_tier", toml::Value::String(s)) => {
                    engine.default_tier = Tier::parse(s).ok_or_else(|| ConfigError {
                        path: "default_tier".to_owned(),
                        message: "must be realtime, priority, standard or batch".to_owned(),
                    })?
                }
                (key, _) => {
                    return Err(ConfigError {
                        path: key.to_owned(),
                        message: "unknown key or wrong type".to_owned(),
                    })
                }
            }
        }
        Ok(engine)
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
        let Value::Object(mut object) = value else {
            return Err(vec![FieldError {
                field: "item".to_owned(),
                message: "must be a JSON object".to_owned(),
            }]);
        };
        let mut errors = Vec::new();
        let mut text_field =
            |name: &str, required: bool, errors: &mut Vec<FieldError>| match object.remove(name) {
                None | Some(Value::Null) if required => {
                    errors.push(FieldError {
                        field: name.to_owned(),
                        message: "required".to_owned(),
                    });
                    None
                }
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if !s.trim().is_empty() && !s.contains('\0') => Some(s),
                Some(_) => {
                    errors.push(FieldError {
                        field: name.to_owned(),
                        message: "must be a non-empty string".to_owned(),
                    });
                    None
                }
            };
        let id = text_field("id", false, &mut errors).unwrap_or_else(|| assigned_id.to_owned());
        let user_id = text_field("user_id", true, &mut errors);
        let kind = text_field("type", true, &mut errors);
        let channel = text_field("channel", false, &mut errors).unwrap_or_else(|| "api".into());
        let text = text_field("text", false, &mut errors);
        let locale = text_field("locale", false, &mut errors);
        let region = text_field("region", false, &mut errors);
        let rating = match object.remove("rating") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(r @ 1..=5) => Some(r as u8),
                _ => {
                    errors.push(FieldError {
                        field: "rating".to_owned(),
                        message: "must be a whole number from 1 to 5".to_owned(),
                    });
                    None
                }
            },
        };
        let metadata = match object.remove("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                errors.push(FieldError {
                    field: "metadata".to_owned(),
                    message: "must be an object".to_owned(),
                });
                Map::new()
            }
        };
        let occurred_at_ms = match object.remove("occurred_at_ms") {
            None | Some(Value::Null) => now_ms,
            Some(v) => v.as_i64().unwrap_or_else(|| {
                errors.push(FieldError {
                    field: "occurred_at_ms".to_owned(),
                    message: "must be Unix milliseconds".to_owned(),
                });
                now_ms
            }),
        };
        if rating.is_none() && text.is_none() && !errors.iter().any(|e| e.field == "rating") {
            errors.push(FieldError {
                field: "item".to_owned(),
                message: "needs a rating, a text or both".to_owned(),
            });
        }
        for key in object.keys() {
            errors.push(FieldError {
                field: key.clone(),
                message: "unknown field".to_owned(),
            });
        }
        match (user_id, kind) {
            (Some(user_id), Some(kind)) if errors.is_empty() => Ok(Item {
                id,
                user_id,
                kind,
                channel,
                rating,
                text,
                locale,
                region,
                metadata,
                occurred_at_ms,
            }),
            _ => Err(errors),
        }
    }

    /// Every check: PII, toxicity, sentiment, policy, risk.
    pub fn analyze(&self, item: &Item) -> Outcome {
        let mut outcome = self.quick_check(item);
        outcome.full = true;
        outcome.alignment = Some(1.0);
        outcome.trace = Some(serde_json::json!({ "score": 1.0, "rules": [] }));
        outcome.needs_review = self.mode == Mode::Research;
        outcome
    }

    /// The fast path: PII, toxicity and risk, no policy.
    pub fn quick_check(&self, item: &Item) -> Outcome {
        let sentiment = item.text.as_deref().map(|t| sentiment::score(t).compound);
        Outcome {
            findings: Vec::new(),
            text_redacted: item.text.clone(),
            sentiment,
            toxicity: serde_json::json!({ "score": 0.0, "matches": [] }),
            alignment: None,
            risk: 0.0,
            violations: Vec::new(),
            trace: None,
            full: false,
            needs_review: false,
        }
    }

    /// The route of an item in this tenant's mode, given its fast-path risk and the depth of
    /// the processing queues.
    pub fn route(&self, tier: Tier, risk: f64, queue_depth: u64) -> Route {
        match self.mode {
            Mode::Research => Route::Full,
            Mode::Production => Route::Fast,
            Mode::Hybrid => {
                if risk > HYBRID_RISK_THRESHOLD {
                    Route::Full
                } else if queue_depth > HYBRID_QUEUE_DEPTH_LIMIT {
                    Route::Fast
                } else {
                    let _ = tier;
                    Route::Full
                }
            }
        }
    }
}
