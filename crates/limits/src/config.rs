//! The rate-limit configuration file (TOML), as documented in `docs/limits.md`.
//!
//! [`Config::parse`] takes the file's text and a name for it (the caller reads the file), and
//! refuses anything malformed with a [`ConfigError`] naming the file, the line and the field.
//! The shipped default is [`DEFAULT_TOML`].

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use serde::Deserialize;

use crate::glob::Glob;

/// The shipped default configuration: seed 002's rules, tier table and endpoint costs.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// The largest number of rules a configuration may hold.
pub const MAX_RULES: usize = 64;

/// A refused configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct ConfigError {
    /// The name the file was given to [`Config::parse`].
    pub file: String,
    /// 1-based line of the offending value (of the file's start when there is no better one).
    pub line: usize,
    /// The field at fault, as a dotted path where known (`rule[2].limit`), else the key on the
    /// offending line.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The rules, every applicable one checked per request.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    /// Cost of a request per endpoint.
    #[serde(default)]
    pub costs: CostConfig,
}

/// Which requests share a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One quota for everyone.
    Global,
    /// One quota per tenant.
    Tenant,
    /// One quota per user.
    User,
    /// One quota per client IP address.
    Ip,
    /// One quota per API key.
    ApiKey,
}

/// The algorithm of a rule (see [`crate::algo`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmKind {
    /// [`crate::FixedWindow`]: `limit + burst` per aligned window.
    FixedWindow,
    /// [`crate::SlidingWindowLog`]: `limit + burst` in every window, exact.
    SlidingWindowLog,
    /// [`crate::SlidingWindowCounter`]: `limit + burst` per window, two-window estimate.
    SlidingWindow,
    /// [`crate::TokenBucket`]: capacity `limit + burst`, refilled `limit` per window.
    TokenBucket,
    /// [`crate::Gcra`]: the leaky bucket; capacity `limit + burst`, drains `limit` per window.
    LeakyBucket,
}

/// What happens to a request a rule refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionConfig {
    /// Refuse it (429 with `Retry-After`).
    Reject,
    /// Hold it until it would be admitted, if that is at most `max_delay_ms` away; else refuse.
    Delay {
        /// The longest wait.
        max_delay_ms: u64,
    },
    /// Queue it, if fewer than `max_queued` are waiting and it would be admitted within
    /// `max_wait_ms`; else refuse.
    Queue {
        /// The most requests waiting per rule.
        max_queued: u32,
        /// The longest wait in the queue.
        max_wait_ms: u64,
    },
    /// Serve a cheaper answer (cached, reduced) instead of refusing.
    Degrade,
}

/// What a backend that cannot be reached (Redis) means for a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Admit every request.
    FailOpen,
    /// Refuse every request.
    FailClosed,
    /// Decide with an in-memory limiter local to the process.
    #[default]
    LocalFallback,
}

/// A subscription tier of seed 002.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Free.
    Free,
    /// Starter.
    Starter,
    /// Professional.
    Professional,
    /// Business.
    Business,
    /// Enterprise.
    Enterprise,
}

impl Tier {
    /// Every tier, cheapest first.
    pub const ALL: [Tier; 5] = [
        Tier::Free,
        Tier::Starter,
        Tier::Professional,
        Tier::Business,
        Tier::Enterprise,
    ];

    /// The tier's name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Starter => "starter",
            Tier::Professional => "professional",
            Tier::Business => "business",
            Tier::Enterprise => "enterprise",
        }
    }
}

/// A tier's replacement for a rule's `limit` and `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierOverride {
    /// Cost units per window for this tier.
    pub limit: NonZeroU64,
    /// Burst allowance for this tier.
    #[serde(default)]
    pub burst: u64,
}

/// One rule as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name; the `RateLimit-Policy` name and the metrics label.
    pub name: String,
    /// Which requests share a quota.
    pub scope: Scope,
    /// The algorithm.
    pub algorithm: AlgorithmKind,
    /// Cost units per window (before the burst allowance).
    pub limit: NonZeroU64,
    /// The window in seconds.
    pub window_secs: NonZeroU64,
    /// Additional units admitted on top of `limit` (seed 002's burst allowance): a window
    /// algorithm admits `limit + burst` per window, a bucket holds `limit + burst`.
    #[serde(default)]
    pub burst: u64,
    /// Path globs the rule applies to (`*` matches any run of characters); empty: every path.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Path globs the rule does not apply to, even when `paths` matches (e.g. routes that
    /// have rules of their own).
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    /// Methods the rule applies to (upper case); empty: every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Cost of every request under this rule, replacing the endpoint cost.
    #[serde(default)]
    pub cost: Option<NonZeroU64>,
    /// What happens to a refused request.
    pub action: ActionConfig,
    /// Count refusals without refusing.
    #[serde(default)]
    pub shadow: bool,
    /// What an unreachable shared backend means for this rule.
    #[serde(default)]
    pub on_backend_failure: FailurePolicy,
    /// Per-tier replacements of `limit` and `burst`.
    #[serde(default)]
    pub tiers: BTreeMap<Tier, TierOverride>,
}

/// Request costs per endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// The cost of a request no endpoint entry matches.
    #[serde(default = "one")]
    pub default: NonZeroU64,
    /// Path (exact, or glob with `*`) to cost; an exact path wins over globs, and a longer glob
    /// over a shorter one.
    #[serde(default)]
    pub endpoints: BTreeMap<String, NonZeroU64>,
}

fn one() -> NonZeroU64 {
    NonZeroU64::MIN
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            default: one(),
            endpoints: BTreeMap::new(),
        }
    }
}

/// The HTTP methods a rule may name.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Config {
    /// Parses and validates `text`, the contents of the file called `file`.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let line = line_of(text, offset);
            ConfigError {
                file: file.to_owned(),
                line,
                field: field_in_message(e.message())
                    .or_else(|| key_on_line(text, line))
                    .unwrap_or_else(|| "(file)".to_owned()),
                message: e.message().trim().to_owned(),
            }
        })?;
        config
            .validate()
            .map_err(|(field, rule, needle, message)| ConfigError {
                file: file.to_owned(),
                line: find_line(text, rule, &needle),
                field,
                message,
            })?;
        Ok(config)
    }

    /// Checks what the types cannot: unique names, glob syntax, methods, and that the rule's cost
    /// (its own, else the default cost) fits every capacity of the rule.
    /// On error: the field path, the rule's index, a string to find its line by (within that
    /// rule), and the message.
    fn validate(&self) -> Result<(), (String, Option<usize>, String, String)> {
        if self.rules.len() > MAX_RULES {
            return Err((
                "rule".into(),
                None,
                "[[rule]]".into(),
                format!("at most {MAX_RULES} rules"),
            ));
        }
        for pattern in self.costs.endpoints.keys() {
            if let Err(why) = Glob::new(pattern) {
                return Err((
                    format!("costs.endpoints.\"{pattern}\""),
                    None,
                    format!("\"{pattern}\""),
                    why.to_string(),
                ));
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let at = |field: &str| format!("rule[{i}].{field}");
            let name_line = format!("\"{}\"", rule.name);
            if rule.name.is_empty() || rule.name.len() > 64 || !rule.name.bytes().all(is_name_byte)
            {
                return Err((
                    at("name"),
                    Some(i),
                    name_line,
                    "1 to 64 characters of a-z, A-Z, 0-9, '_', '-'".into(),
                ));
            }
            if self.rules[..i].iter().any(|r| r.name == rule.name) {
                return Err((
                    at("name"),
                    Some(i),
                    name_line,
                    "a rule of that name exists".into(),
                ));
            }
            for (field, pattern) in rule
                .paths
                .iter()
                .map(|p| ("paths", p))
                .chain(rule.exclude_paths.iter().map(|p| ("exclude_paths", p)))
            {
                if let Err(why) = Glob::new(pattern) {
                    return Err((
                        at(field),
                        Some(i),
                        format!("\"{pattern}\""),
                        why.to_string(),
                    ));
                }
            }
            for method in &rule.methods {
                if !METHODS.contains(&method.as_str()) {
                    return Err((
                        at("methods"),
                        Some(i),
                        format!("\"{method}\""),
                        format!("unknown method {method:?} (one of {})", METHODS.join(", ")),
                    ));
                }
            }
            // Endpoint costs are not checked here (a rule with paths may never see a given
            // endpoint); a request costing more than a capacity is refused with `NEVER`.
            let cost = rule.cost.unwrap_or(self.costs.default).get();
            let quotas = [(None, rule.limit, rule.burst)].into_iter().chain(
                rule.tiers
                    .iter()
                    .map(|(tier, o)| (Some(*tier), o.limit, o.burst)),
            );
            for (tier, limit, burst) in quotas {
                let capacity = capacity(limit.get(), burst);
                if cost > capacity {
                    let field = match tier {
                        Some(t) => at(&format!("tiers.{}.limit", t.as_str())),
                        None => at("limit"),
                    };
                    return Err((
                        field,
                        Some(i),
                        name_line,
                        format!(
                            "a request of cost {cost} could never pass a capacity of {capacity}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The most units a rule with these numbers admits at once: `limit + burst` for every
/// algorithm (seed 002's `requests_per_window + burst_allowance`). A window algorithm admits
/// that much per window; a bucket holds that much and refills `limit` per window.
pub fn capacity(limit: u64, burst: u64) -> u64 {
    limit.saturating_add(burst)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of the first `needle` after the start of rule `rule` (of the file's start), else
/// the rule's first line.
fn find_line(text: &str, rule: Option<usize>, needle: &str) -> usize {
    let start = rule
        .and_then(|i| text.match_indices("[[rule]]").nth(i))
        .map_or(0, |(offset, _)| offset);
    let offset = text[start..].find(needle).map_or(start, |o| start + o);
    line_of(text, offset)
}

/// serde names the field in "missing field `x`" and "unknown field `x`".
fn field_in_message(message: &str) -> Option<String> {
    let start = message.find("field `")? + "field `".len();
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// The key of a `key = value` line.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let content = text.lines().nth(line - 1)?;
    let (key, _) = content.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_owned())
}
