//! Validation, compilation and evaluation of a flag set.

use std::collections::{BTreeMap, HashMap, HashSet};

use regex::{Regex, RegexBuilder};
use serde::Serialize;
use serde_json::Value;

use crate::bucket::{bucket, split_salt, variant_index, BUCKETS};
use crate::context::{AttrRef, AttributeValue, EvaluationContext};
use crate::model::{Condition, Flag, FlagStatus, FlagType, Rule, RuleGroup};

/// Compiled regexes are bounded so that a flag definition cannot make evaluation slow or big.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Nesting bound of rule groups, so that validation and evaluation cannot overflow the stack.
const MAX_GROUP_DEPTH: usize = 16;

/// A problem in a flag definition, naming the flag and the field path inside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("flag `{flag}`: {path}: {message}")]
pub struct ValidationError {
    /// Key of the offending flag.
    pub flag: String,
    /// Path of the field inside the flag, e.g. `rules[0].when.all[1].op`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Why a value was served, with OFREP's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag cannot vary: no rules, no split, no prerequisites; or an environment override
    /// serves one variant or value to everyone (then `environment_override` names it).
    Static,
    /// The default variant, because nothing else decided.
    Default,
    /// A targeting rule with a fixed variant matched.
    TargetingMatch,
    /// The bucket chose the variant: the flag's split, or the split of a rule that matched
    /// (then `rule_id` names it).
    Split,
    /// The flag is disabled; the off variant is served.
    Disabled,
    /// Evaluation failed; see the error code.
    Error,
}

/// OFREP error codes that evaluation can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No flag with this key.
    FlagNotFound,
    /// The flag set could not be parsed (reported by callers that parse JSON; never by evaluation).
    ParseError,
    /// The flag needs a bucketing key and the context has none.
    TargetingKeyMissing,
    /// The bucketing attribute is not a string.
    InvalidContext,
    /// Anything else (e.g. prerequisites nested too deep).
    General,
}

/// What disabled a flag (the step of the evaluation order that served the off variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabledBy {
    /// `kill_switch` is on.
    KillSwitch,
    /// Status is draft, completed or archived.
    Status,
    /// `expires_at` has passed.
    Expired,
    /// `schedule.enable_at` has not come yet.
    NotYetEnabled,
    /// The environment override has `enabled: false`.
    Environment,
    /// The context's tenant is not allowed.
    Tenant,
    /// The context's tier is not allowed.
    Tier,
    /// A prerequisite flag is not in an accepted variant.
    Prerequisite,
}

/// The result of evaluating one flag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation<'a> {
    /// The served value (`null` when the flag is not found).
    pub value: &'a Value,
    /// The served variant's key.
    pub variant: Option<&'a str>,
    /// Why.
    pub reason: Reason,
    /// The targeting rule that matched, if any (also when the user is outside the rule's
    /// rollout and gets the default variant).
    pub rule_id: Option<&'a str>,
    /// The rollout bucket (0..10,000), when bucketing took place.
    pub bucket: Option<u16>,
    /// The environment whose override (`variant` or `value`) was served, if one was.
    pub environment_override: Option<&'a str>,
    /// Set when `reason` is `Error`.
    pub error_code: Option<ErrorCode>,
    /// Set when `reason` is `Disabled`.
    pub disabled_by: Option<DisabledBy>,
}

static NULL: Value = Value::Null;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Cmp::Eq => ord == Equal,
            Cmp::Gt => ord == Greater,
            Cmp::Gte => ord != Less,
            Cmp::Lt => ord == Less,
            Cmp::Lte => ord != Greater,
        }
    }
}

#[derive(Debug, Clone)]
enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
}

#[derive(Debug, Clone)]
enum Test {
    In(Vec<Literal>),
    Equals(Literal),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Regex(Regex),
    Number(Cmp, f64),
    Date(Cmp, i64),
    Semver(Cmp, semver::Version),
    IsSet,
}

#[derive(Debug, Clone)]
struct CompiledCondition {
    attribute: String,
    test: Test,
    negate: bool,
    case_insensitive: bool,
}

#[derive(Debug, Clone)]
enum Group {
    All(Vec<Group>),
    Any(Vec<Group>),
    None(Vec<Group>),
    Leaf(CompiledCondition),
}

/// What a matching rule serves.
#[derive(Debug, Clone)]
enum RuleServe {
    /// One variant (index into the flag's variants) to everyone matched.
    Variant(usize),
    /// A rollout and split: `weights[i]` is the share of variant `variants[i]`.
    Split {
        rollout_bp: u32,
        weights: Vec<u32>,
        variants: Vec<usize>,
    },
}

#[derive(Debug, Clone)]
struct CompiledRule {
    group: Group,
    serve: RuleServe,
}

/// What an environment override serves to everyone in the environment.
#[derive(Debug, Clone)]
enum EnvServe {
    Variant(usize),
    Value(Value),
}

#[derive(Debug, Clone)]
struct CompiledEnv {
    enabled: bool,
    rollout_bp: Option<u32>,
    default_variant: Option<usize>,
    serve: Option<EnvServe>,
}

#[derive(Debug, Clone)]
struct CompiledFlag {
    def: Flag,
    default_variant: usize,
    off_variant: usize,
    /// Empty when the flag has no split.
    weights: Vec<u32>,
    rules: Vec<CompiledRule>,
    /// (flag index, accepted variant indices of that flag)
    prerequisites: Vec<(usize, Vec<usize>)>,
    expires_ms: Option<i64>,
    enable_at_ms: Option<i64>,
    ramp: Option<(i64, i64, u32, u32)>,
    split_salt: String,
    environments: BTreeMap<String, CompiledEnv>,
    is_static: bool,
}

/// A validated flag set, with regexes and literals compiled, ready for evaluation.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    flags: Vec<CompiledFlag>,
    index: HashMap<String, usize>,
}

/// Parses an RFC 3339 instant to Unix milliseconds.
pub fn parse_instant_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn parse_semver(s: &str) -> Option<semver::Version> {
    let s = s.trim();
    semver::Version::parse(s.strip_prefix('v').unwrap_or(s)).ok()
}

struct Errors<'a> {
    flag: &'a str,
    list: Vec<ValidationError>,
}

impl Errors<'_> {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.list.push(ValidationError {
            flag: self.flag.to_owned(),
            path: path.into(),
            message: message.into(),
        });
    }
}

fn literal(v: &Value, ci: bool) -> Option<Literal> {
    match v {
        Value::String(s) if ci => Some(Literal::Str(s.to_lowercase())),
        Value::String(s) => Some(Literal::Str(s.clone())),
        Value::Number(n) => n.as_f64().map(Literal::Num),
        Value::Bool(b) => Some(Literal::Bool(*b)),
        _ => None,
    }
}

fn compile_condition(
    c: &Condition,
    path: &str,
    errs: &mut Errors<'_>,
) -> Option<CompiledCondition> {
    let ci = c.case_insensitive;
    let mut negate = c.negate;
    let single = |errs: &mut Errors<'_>| -> Option<&Value> {
        let v = c.value.as_ref();
        if v.is_none() {
            errs.push(
                format!("{path}.value"),
                format!("operator `{}` needs `value`", c.op),
            );
        }
        v
    };
    let string = |errs: &mut Errors<'_>| -> Option<String> {
        match single(errs)? {
            Value::String(s) if ci => Some(s.to_lowercase()),
            Value::String(s) => Some(s.clone()),
            _ => {
                errs.push(
                    format!("{path}.value"),
                    format!("operator `{}` needs a string", c.op),
                );
                None
            }
        }
    };
    let number = |errs: &mut Errors<'_>| -> Option<f64> {
        match single(errs)?.as_f64() {
            Some(n) => Some(n),
            None => {
                errs.push(
                    format!("{path}.value"),
                    format!("operator `{}` needs a number", c.op),
                );
                None
            }
        }
    };
    let date = |errs: &mut Errors<'_>| -> Option<i64> {
        let v = single(errs)?;
        let ms = match v {
            Value::String(s) => parse_instant_ms(s),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        if ms.is_none() {
            errs.push(
                format!("{path}.value"),
                format!("bad date literal {v} (RFC 3339 or Unix milliseconds)"),
            );
        }
        ms
    };
    let version = |errs: &mut Errors<'_>| -> Option<semver::Version> {
        let v = single(errs)?;
        let parsed = v.as_str().and_then(parse_semver);
        if parsed.is_none() {
            errs.push(format!("{path}.value"), format!("bad semver literal {v}"));
        }
        parsed
    };
    let test = match c.op.as_str() {
        "in" | "not_in" => {
            negate ^= c.op == "not_in";
            let Some(values) = c.values.as_ref() else {
                errs.push(
                    format!("{path}.values"),
                    format!("operator `{}` needs `values`", c.op),
                );
                return None;
            };
            let mut lits = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                match literal(v, ci) {
                    Some(l) => lits.push(l),
                    None => errs.push(
                        format!("{path}.values[{i}]"),
                        "must be a string, number or boolean",
                    ),
                }
            }
            Test::In(lits)
        }
        "equals" | "not_equals" => {
            negate ^= c.op == "not_equals";
            let v = single(errs)?;
            match literal(v, ci) {
                Some(l) => Test::Equals(l),
                None => {
                    errs.push(
                        format!("{path}.value"),
                        "must be a string, number or boolean",
                    );
                    return None;
                }
            }
        }
        "starts_with" => Test::StartsWith(string(errs)?),
        "ends_with" => Test::EndsWith(string(errs)?),
        "contains" => Test::Contains(string(errs)?),
        "regex" => {
            let pattern = string(errs)?;
            match RegexBuilder::new(&pattern)
                .case_insensitive(ci)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(r) => Test::Regex(r),
                Err(e) => {
                    errs.push(format!("{path}.value"), format!("bad regex: {e}"));
                    return None;
                }
            }
        }
        "eq" => Test::Number(Cmp::Eq, number(errs)?),
        "gt" => Test::Number(Cmp::Gt, number(errs)?),
        "gte" => Test::Number(Cmp::Gte, number(errs)?),
        "lt" => Test::Number(Cmp::Lt, number(errs)?),
        "lte" => Test::Number(Cmp::Lte, number(errs)?),
        "before" => Test::Date(Cmp::Lt, date(errs)?),
        "after" => Test::Date(Cmp::Gt, date(errs)?),
        "semver_eq" => Test::Semver(Cmp::Eq, version(errs)?),
        "semver_gt" => Test::Semver(Cmp::Gt, version(errs)?),
        "semver_lt" => Test::Semver(Cmp::Lt, version(errs)?),
        "is_set" | "is_not_set" => {
            negate ^= c.op == "is_not_set";
            Test::IsSet
        }
        other => {
            errs.push(format!("{path}.op"), format!("unknown operator `{other}`"));
            return None;
        }
    };
    if c.attribute.is_empty() {
        errs.push(format!("{path}.attribute"), "must not be empty");
    }
    Some(CompiledCondition {
        attribute: c.attribute.clone(),
        test,
        negate,
        case_insensitive: ci,
    })
}

fn compile_group(g: &RuleGroup, path: &str, depth: usize, errs: &mut Errors<'_>) -> Option<Group> {
    if depth > MAX_GROUP_DEPTH {
        errs.push(
            path,
            format!("rule groups nested deeper than {MAX_GROUP_DEPTH}"),
        );
        return None;
    }
    let members = |name: &str, gs: &[RuleGroup], errs: &mut Errors<'_>| -> Option<Vec<Group>> {
        let mut out = Vec::with_capacity(gs.len());
        let mut ok = true;
        for (i, sub) in gs.iter().enumerate() {
            match compile_group(sub, &format!("{path}.{name}[{i}]"), depth + 1, errs) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    };
    Some(match g {
        RuleGroup::All { all } => Group::All(members("all", all, errs)?),
        RuleGroup::Any { any } => Group::Any(members("any", any, errs)?),
        RuleGroup::None { none } => Group::None(members("none", none, errs)?),
        RuleGroup::Condition(c) => Group::Leaf(compile_condition(c, path, errs)?),
    })
}

/// Whether `key` is a well-formed flag key: 1 to 128 characters of `A-Z a-z 0-9 _ - .`.
///
/// ```
/// assert!(flags::is_valid_flag_key("new-checkout.v2"));
/// assert!(!flags::is_valid_flag_key(""));
/// assert!(!flags::is_valid_flag_key("no spaces"));
/// ```
pub fn is_valid_flag_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn instant(value: &Option<String>, path: &str, errs: &mut Errors<'_>) -> Option<i64> {
    let s = value.as_ref()?;
    let ms = parse_instant_ms(s);
    if ms.is_none() {
        errs.push(path, format!("bad RFC 3339 date `{s}`"));
    }
    ms
}

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Longest name-like text (variant keys, rule ids, attributes, owner, tags...), in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// Free text is bounded and holds no control characters (`multiline` lets tabs and line
/// breaks through): what is stored is shown in consoles and logs and compared as keys.
fn check_text(path: &str, value: &str, max_chars: usize, multiline: bool, errs: &mut Errors<'_>) {
    let count = value.chars().count();
    if count > max_chars {
        errs.push(
            path,
            format!("must be at most {max_chars} characters (got {count})"),
        );
    }
    let allowed = |c: char| multiline && matches!(c, '\t' | '\n' | '\r');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        errs.push(
            path,
            "must not contain control characters (NUL, escapes...)",
        );
    }
}

/// The bounds of every free-text field of a flag; see [`check_text`].
fn check_flag_text(flag: &Flag, errs: &mut Errors<'_>) {
    if let Some(d) = &flag.description {
        check_text("description", d, MAX_DESCRIPTION_CHARS, true, errs);
    }
    if let Some(o) = &flag.owner {
        check_text("owner", o, MAX_NAME_CHARS, false, errs);
    }
    if let Some(b) = &flag.bucket_by {
        check_text("bucket_by", b, MAX_NAME_CHARS, false, errs);
    }
    for (i, v) in flag.variants.iter().enumerate() {
        if v.key.is_empty() {
            errs.push(format!("variants[{i}].key"), "must not be empty");
        }
        check_text(
            &format!("variants[{i}].key"),
            &v.key,
            MAX_NAME_CHARS,
            false,
            errs,
        );
    }
    for (i, r) in flag.rules.iter().enumerate() {
        check_text(
            &format!("rules[{i}].id"),
            &r.id,
            MAX_NAME_CHARS,
            false,
            errs,
        );
        check_group_text(&r.when, &format!("rules[{i}].when"), 0, errs);
    }
    for (i, t) in flag.tags.iter().enumerate() {
        check_text(&format!("tags[{i}]"), t, MAX_NAME_CHARS, false, errs);
    }
    for (i, t) in flag.allowed_tenants.iter().enumerate() {
        check_text(
            &format!("allowed_tenants[{i}]"),
            t,
            MAX_NAME_CHARS,
            false,
            errs,
        );
    }
    for (i, t) in flag.required_tiers.iter().enumerate() {
        check_text(
            &format!("required_tiers[{i}]"),
            t,
            MAX_NAME_CHARS,
            false,
            errs,
        );
    }
    for name in flag.environments.keys() {
        if !is_valid_flag_key(name) || name.len() > 64 {
            errs.push(
                format!("environments.{}", name.chars().take(64).collect::<String>()),
                "environment names are 1-64 characters of A-Z a-z 0-9 _ - .",
            );
        }
    }
    for (i, p) in flag.prerequisites.iter().enumerate() {
        for (j, v) in p.variants.iter().enumerate() {
            check_text(
                &format!("prerequisites[{i}].variants[{j}]"),
                v,
                MAX_NAME_CHARS,
                false,
                errs,
            );
        }
    }
}

fn check_group_text(g: &RuleGroup, path: &str, depth: usize, errs: &mut Errors<'_>) {
    if depth > MAX_GROUP_DEPTH {
        return; // compile_group reports it
    }
    let (name, members) = match g {
        RuleGroup::All { all } => ("all", all),
        RuleGroup::Any { any } => ("any", any),
        RuleGroup::None { none } => ("none", none),
        RuleGroup::Condition(c) => {
            check_text(
                &format!("{path}.attribute"),
                &c.attribute,
                MAX_NAME_CHARS,
                false,
                errs,
            );
            return;
        }
    };
    for (i, sub) in members.iter().enumerate() {
        check_group_text(sub, &format!("{path}.{name}[{i}]"), depth + 1, errs);
    }
}

/// The JSON type name of `v`, for messages and for comparing an override's value with the
/// default variant's.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validates what rule `i` serves: exactly one of a variant and a split; a split's rollout is at
/// most 10,000 and its variants are known, unique and weigh 10,000 together (absent: the flag's
/// own weights, which must then exist).
fn compile_rule_serve(
    flag: &Flag,
    i: usize,
    rule: &Rule,
    flag_has_split: bool,
    errs: &mut Errors<'_>,
) -> Option<RuleServe> {
    let index_of = |name: &str| flag.variants.iter().position(|v| v.key == name);
    let split = match (&rule.variant, &rule.split) {
        (Some(_), Some(_)) => {
            errs.push(
                format!("rules[{i}].split"),
                "a rule serves `variant` or `split`, not both",
            );
            return None;
        }
        (None, None) => {
            errs.push(
                format!("rules[{i}].variant"),
                "a rule needs `variant` or `split`",
            );
            return None;
        }
        (Some(name), None) => {
            return match index_of(name) {
                Some(v) => Some(RuleServe::Variant(v)),
                None => {
                    errs.push(
                        format!("rules[{i}].variant"),
                        format!("unknown variant `{name}`"),
                    );
                    None
                }
            };
        }
        (None, Some(split)) => split,
    };
    let before = errs.list.len();
    let rollout_bp = split.rollout_bp.unwrap_or(BUCKETS);
    if rollout_bp > BUCKETS {
        errs.push(
            format!("rules[{i}].split.rollout_bp"),
            format!("{rollout_bp} basis points is over 10000"),
        );
    }
    let (weights, variants) = match &split.variants {
        None if !flag_has_split => {
            errs.push(
                format!("rules[{i}].split.variants"),
                "the flag has no variant weights: give the split's own `variants`",
            );
            (Vec::new(), Vec::new())
        }
        None => (
            flag.variants.iter().map(|v| v.weight_bp).collect(),
            (0..flag.variants.len()).collect(),
        ),
        Some(list) => {
            if list.is_empty() {
                errs.push(
                    format!("rules[{i}].split.variants"),
                    "a split needs at least one variant",
                );
            }
            let mut seen = HashSet::new();
            let mut weights = Vec::with_capacity(list.len());
            let mut variants = Vec::with_capacity(list.len());
            for (j, sv) in list.iter().enumerate() {
                let path = format!("rules[{i}].split.variants[{j}].variant");
                match index_of(&sv.variant) {
                    Some(v) if !seen.insert(v) => {
                        errs.push(path, format!("duplicate variant `{}`", sv.variant))
                    }
                    Some(v) => {
                        weights.push(sv.weight_bp);
                        variants.push(v);
                    }
                    None => errs.push(path, format!("unknown variant `{}`", sv.variant)),
                }
            }
            let sum: u64 = list.iter().map(|sv| u64::from(sv.weight_bp)).sum();
            if !list.is_empty() && sum != u64::from(BUCKETS) {
                errs.push(
                    format!("rules[{i}].split.variants"),
                    format!("weights sum to {sum} basis points, must be 10000"),
                );
            }
            (weights, variants)
        }
    };
    (errs.list.len() == before).then_some(RuleServe::Split {
        rollout_bp,
        weights,
        variants,
    })
}

/// Compiles one flag; prerequisite indices are resolved afterwards.
fn compile_flag(flag: Flag, errs: &mut Errors<'_>) -> CompiledFlag {
    if !is_valid_flag_key(&flag.key) {
        errs.push("key", "must be 1-128 characters of A-Z a-z 0-9 _ - .");
    }
    check_flag_text(&flag, errs);
    let variant_index_of = |name: &str| flag.variants.iter().position(|v| v.key == name);
    if flag.variants.is_empty() {
        errs.push("variants", "at least one variant is needed");
    }
    let mut seen = HashSet::new();
    for (i, v) in flag.variants.iter().enumerate() {
        if !seen.insert(v.key.as_str()) {
            errs.push(
                format!("variants[{i}].key"),
                format!("duplicate variant `{}`", v.key),
            );
        }
        if matches!(flag.flag_type, FlagType::Boolean | FlagType::Operational)
            && !v.value.is_boolean()
        {
            errs.push(
                format!("variants[{i}].value"),
                "boolean and operational flags serve booleans",
            );
        }
    }
    if flag.variants.iter().filter(|v| v.control).count() > 1 {
        errs.push("variants", "at most one variant can be the control");
    }
    let weight_sum: u64 = flag.variants.iter().map(|v| u64::from(v.weight_bp)).sum();
    let has_split = weight_sum > 0;
    if has_split && weight_sum != u64::from(BUCKETS) {
        errs.push(
            "variants",
            format!("weights sum to {weight_sum} basis points, must be 10000"),
        );
    }
    let lookup = |path: &str, name: &str, errs: &mut Errors<'_>| -> usize {
        variant_index_of(name).unwrap_or_else(|| {
            errs.push(path, format!("unknown variant `{name}`"));
            0
        })
    };
    let default_variant = lookup("default_variant", &flag.default_variant, errs);
    // `lookup` answers 0 for an unknown name; type checks against it would report noise.
    let default_variant_index = variant_index_of(&flag.default_variant).unwrap_or(usize::MAX);
    let off_variant = lookup("off_variant", &flag.off_variant, errs);

    let mut rules = Vec::with_capacity(flag.rules.len());
    let mut rule_ids = HashSet::new();
    for (i, r) in flag.rules.iter().enumerate() {
        if r.id.is_empty() || !rule_ids.insert(r.id.as_str()) {
            errs.push(
                format!("rules[{i}].id"),
                format!("rule ids must be unique and non-empty (`{}`)", r.id),
            );
        }
        let serve = compile_rule_serve(&flag, i, r, has_split, errs);
        let group = compile_group(&r.when, &format!("rules[{i}].when"), 0, errs);
        if let (Some(group), Some(serve)) = (group, serve) {
            rules.push(CompiledRule { group, serve });
        }
    }

    let check_bp = |path: &str, bp: u32, errs: &mut Errors<'_>| {
        if bp > BUCKETS {
            errs.push(path, format!("{bp} basis points is over 10000"));
        }
        if bp < BUCKETS && !has_split {
            errs.push(
                path,
                "a rollout below 10000 needs variant weights (who is in gets the split)",
            );
        }
    };
    if let Some(bp) = flag.rollout_bp {
        check_bp("rollout_bp", bp, errs);
    }
    let expires_ms = instant(&flag.expires_at, "expires_at", errs);
    let mut enable_at_ms = None;
    let mut ramp = None;
    if let Some(s) = &flag.schedule {
        enable_at_ms = instant(&s.enable_at, "schedule.enable_at", errs);
        if let Some(r) = &s.ramp {
            let start = instant(&Some(r.start.clone()), "schedule.ramp.start", errs);
            let end = instant(&Some(r.end.clone()), "schedule.ramp.end", errs);
            check_bp("schedule.ramp.from_bp", r.from_bp, errs);
            check_bp("schedule.ramp.to_bp", r.to_bp, errs);
            if let (Some(start), Some(end)) = (start, end) {
                if end <= start {
                    errs.push("schedule.ramp.end", "must be after start");
                }
                ramp = Some((start, end, r.from_bp, r.to_bp));
            }
        }
    }
    let mut environments = BTreeMap::new();
    for (name, e) in &flag.environments {
        if let Some(bp) = e.rollout_bp {
            check_bp(&format!("environments.{name}.rollout_bp"), bp, errs);
        }
        let default_variant = e
            .default_variant
            .as_ref()
            .map(|v| lookup(&format!("environments.{name}.default_variant"), v, errs));
        let serve = match (&e.variant, &e.value) {
            (Some(_), Some(_)) => {
                errs.push(
                    format!("environments.{name}.value"),
                    "an environment override serves `variant` or `value`, not both",
                );
                None
            }
            (Some(v), None) => Some(EnvServe::Variant(lookup(
                &format!("environments.{name}.variant"),
                v,
                errs,
            ))),
            (None, Some(value)) => {
                let expected = flag.variants.get(default_variant_index).map(|d| &d.value);
                if let Some(expected) = expected {
                    if json_type(expected) != json_type(value) {
                        errs.push(
                            format!("environments.{name}.value"),
                            format!(
                                "must be a {} like the default variant's value (got a {})",
                                json_type(expected),
                                json_type(value)
                            ),
                        );
                    }
                }
                Some(EnvServe::Value(value.clone()))
            }
            (None, None) => None,
        };
        environments.insert(
            name.clone(),
            CompiledEnv {
                enabled: e.enabled.unwrap_or(true),
                rollout_bp: e.rollout_bp,
                default_variant,
                serve,
            },
        );
    }
    match flag.flag_type {
        FlagType::Multivariate if flag.variants.len() < 2 || !has_split => errs.push(
            "variants",
            "a multivariate flag needs two or more weighted variants",
        ),
        FlagType::Percentage if flag.rollout_bp.is_none() && ramp.is_none() => errs.push(
            "rollout_bp",
            "a percentage flag needs `rollout_bp` or a ramp",
        ),
        FlagType::Targeting if flag.rules.is_empty() => {
            errs.push("rules", "a targeting flag needs at least one rule")
        }
        _ => {}
    }
    let is_static = flag.rules.is_empty() && !has_split && flag.prerequisites.is_empty();
    CompiledFlag {
        default_variant,
        off_variant,
        weights: if has_split {
            flag.variants.iter().map(|v| v.weight_bp).collect()
        } else {
            Vec::new()
        },
        rules,
        prerequisites: Vec::new(),
        expires_ms,
        enable_at_ms,
        ramp,
        split_salt: split_salt(&flag.key),
        environments,
        is_static,
        def: flag,
    }
}

/// Finds a prerequisite cycle, returned as the keys along it (first key repeated at the end).
fn find_cycle(flags: &[CompiledFlag]) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; flags.len()];
    let mut path: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        flags: &[CompiledFlag],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        match state.get(i) {
            Some(2) | None => return None,
            Some(1) => {
                let start = path.iter().position(|p| *p == i).unwrap_or(0);
                let mut cycle: Vec<String> = path
                    .get(start..)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| flags.get(*p).map(|f| f.def.key.clone()))
                    .collect();
                cycle.extend(flags.get(i).map(|f| f.def.key.clone()));
                return Some(cycle);
            }
            _ => {}
        }
        if let Some(s) = state.get_mut(i) {
            *s = 1;
        }
        path.push(i);
        for (next, _) in flags
            .get(i)
            .map(|f| f.prerequisites.as_slice())
            .unwrap_or_default()
        {
            if let Some(c) = visit(*next, flags, state, path) {
                return Some(c);
            }
        }
        path.pop();
        if let Some(s) = state.get_mut(i) {
            *s = 2;
        }
        None
    }
    (0..flags.len()).find_map(|i| visit(i, flags, &mut state, &mut path))
}

impl FlagSet {
    /// Validates `flags` and compiles them. All problems found are returned, each naming its
    /// flag and field path.
    ///
    /// ```
    /// let flags: Vec<flags::Flag> = serde_json::from_str(r#"[{
    ///     "key": "dark-mode", "type": "boolean", "status": "active",
    ///     "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
    ///     "default_variant": "on", "off_variant": "off"
    /// }]"#).unwrap();
    /// let set = flags::FlagSet::compile(flags).unwrap();
    /// let eval = set.evaluate("dark-mode", &flags::EvaluationContext::default(), None, 0);
    /// assert_eq!(eval.value, &serde_json::json!(true));
    /// assert_eq!(eval.reason, flags::Reason::Static);
    /// ```
    pub fn compile(flags: Vec<Flag>) -> Result<FlagSet, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let mut index = HashMap::with_capacity(flags.len());
        let mut compiled = Vec::with_capacity(flags.len());
        for flag in flags {
            let key = flag.key.clone();
            let mut errs = Errors {
                flag: &key,
                list: Vec::new(),
            };
            if index.insert(key.clone(), compiled.len()).is_some() {
                errs.push("key", "duplicate flag key");
            }
            compiled.push(compile_flag(flag, &mut errs));
            errors.append(&mut errs.list);
        }
        // Prerequisites need the whole set.
        for i in 0..compiled.len() {
            let Some(flag) = compiled.get(i) else {
                continue;
            };
            let key = flag.def.key.clone();
            let mut errs = Errors {
                flag: &key,
                list: Vec::new(),
            };
            let mut resolved = Vec::new();
            for (p, pre) in flag.def.prerequisites.iter().enumerate() {
                let Some(&target) = index.get(&pre.flag) else {
                    errs.push(
                        format!("prerequisites[{p}].flag"),
                        format!("unknown prerequisite flag `{}`", pre.flag),
                    );
                    continue;
                };
                let variants = compiled
                    .get(target)
                    .map(|t| t.def.variants.as_slice())
                    .unwrap_or_default();
                let mut accepted = Vec::new();
                for (v, name) in pre.variants.iter().enumerate() {
                    match variants.iter().position(|tv| &tv.key == name) {
                        Some(idx) => accepted.push(idx),
                        None => errs.push(
                            format!("prerequisites[{p}].variants[{v}]"),
                            format!("flag `{}` has no variant `{name}`", pre.flag),
                        ),
                    }
                }
                resolved.push((target, accepted));
            }
            if let Some(flag) = compiled.get_mut(i) {
                flag.prerequisites = resolved;
            }
            errors.append(&mut errs.list);
        }
        if let Some(cycle) = find_cycle(&compiled) {
            errors.push(ValidationError {
                flag: cycle.first().cloned().unwrap_or_default(),
                path: "prerequisites".to_owned(),
                message: format!("prerequisite cycle: {}", cycle.join(" -> ")),
            });
        }
        if errors.is_empty() {
            Ok(FlagSet {
                flags: compiled,
                index,
            })
        } else {
            Err(errors)
        }
    }

    /// The flag definitions, in the order given (for export).
    pub fn flags(&self) -> impl Iterator<Item = &Flag> {
        self.flags.iter().map(|f| &f.def)
    }

    /// The definition of flag `key`, if the set has it.
    pub fn flag(&self, key: &str) -> Option<&Flag> {
        let &i = self.index.get(key)?;
        self.flags.get(i).map(|f| &f.def)
    }

    /// How many flags the set holds.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Whether the set holds no flag.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Evaluates flag `key` for `ctx` in `environment` at `now_unix_ms`. Never panics.
    pub fn evaluate<'a>(
        &'a self,
        key: &str,
        ctx: &EvaluationContext,
        environment: Option<&str>,
        now_unix_ms: i64,
    ) -> Evaluation<'a> {
        match self.index.get(key) {
            Some(&i) => self.evaluate_index(i, ctx, environment, now_unix_ms, 0),
            None => error(None, ErrorCode::FlagNotFound),
        }
    }

    /// Evaluates every flag, in definition order.
    pub fn evaluate_all<'a>(
        &'a self,
        ctx: &EvaluationContext,
        environment: Option<&str>,
        now_unix_ms: i64,
    ) -> Vec<(&'a str, Evaluation<'a>)> {
        (0..self.flags.len())
            .filter_map(|i| {
                let flag = self.flags.get(i)?;
                Some((
                    flag.def.key.as_str(),
                    self.evaluate_index(i, ctx, environment, now_unix_ms, 0),
                ))
            })
            .collect()
    }

    fn evaluate_index<'a>(
        &'a self,
        i: usize,
        ctx: &EvaluationContext,
        environment: Option<&str>,
        now: i64,
        depth: usize,
    ) -> Evaluation<'a> {
        let Some(flag) = self.flags.get(i) else {
            return error(None, ErrorCode::General);
        };
        // Validation refuses cycles; the bound is a second line of defence.
        if depth > self.flags.len() {
            return error(Some(flag), ErrorCode::General);
        }
        let def = &flag.def;
        let off = |by| {
            served(
                flag,
                flag.off_variant,
                Reason::Disabled,
                None,
                None,
                Some(by),
            )
        };
        if def.kill_switch {
            return off(DisabledBy::KillSwitch);
        }
        if !matches!(def.status, FlagStatus::Active | FlagStatus::Deprecated) {
            return off(DisabledBy::Status);
        }
        if flag.expires_ms.is_some_and(|t| now >= t) {
            return off(DisabledBy::Expired);
        }
        if flag.enable_at_ms.is_some_and(|t| now < t) {
            return off(DisabledBy::NotYetEnabled);
        }
        let env = environment.and_then(|e| flag.environments.get_key_value(e));
        if env.is_some_and(|(_, e)| !e.enabled) {
            return off(DisabledBy::Environment);
        }
        // The environment's override is served to everyone there, before any targeting.
        if let Some((name, serve)) = env.and_then(|(n, e)| e.serve.as_ref().map(|s| (n, s))) {
            let mut e = match serve {
                EnvServe::Variant(v) => served(flag, *v, Reason::Static, None, None, None),
                EnvServe::Value(value) => Evaluation {
                    value,
                    variant: None,
                    reason: Reason::Static,
                    rule_id: None,
                    bucket: None,
                    environment_override: None,
                    error_code: None,
                    disabled_by: None,
                },
            };
            if e.reason == Reason::Static {
                e.environment_override = Some(name.as_str());
            }
            return e;
        }
        let env = env.map(|(_, e)| e);
        if !def.allowed_tenants.is_empty() && !attribute_in(ctx, "tenant", &def.allowed_tenants) {
            return off(DisabledBy::Tenant);
        }
        if !def.required_tiers.is_empty() && !attribute_in(ctx, "tier", &def.required_tiers) {
            return off(DisabledBy::Tier);
        }
        for (pre, accepted) in &flag.prerequisites {
            let result = self.evaluate_index(*pre, ctx, environment, now, depth + 1);
            let ok = result.reason != Reason::Error
                && result.variant.is_some_and(|v| {
                    let variants = self.flags.get(*pre).map(|f| f.def.variants.as_slice());
                    accepted.iter().any(|a| {
                        variants
                            .and_then(|vs| vs.get(*a))
                            .is_some_and(|tv| tv.key == v)
                    })
                });
            if !ok {
                return off(DisabledBy::Prerequisite);
            }
        }
        let default_variant = env
            .and_then(|e| e.default_variant)
            .unwrap_or(flag.default_variant);
        for (rule, def_rule) in flag.rules.iter().zip(&def.rules) {
            if !group_matches(&rule.group, ctx) {
                continue;
            }
            let rule_id = Some(def_rule.id.as_str());
            let (rollout_bp, weights, variants) = match &rule.serve {
                RuleServe::Variant(v) => {
                    return served(flag, *v, Reason::TargetingMatch, rule_id, None, None);
                }
                RuleServe::Split {
                    rollout_bp,
                    weights,
                    variants,
                } => (*rollout_bp, weights, variants),
            };
            // The same buckets as the flag-level split, independent of the rule: editing or
            // moving the rule keeps everyone's assignment.
            let key = match bucketing_key(def, ctx) {
                Ok(k) => k,
                Err(code) => return error(Some(flag), code),
            };
            let b = bucket(&def.key, key);
            if u32::from(b) >= rollout_bp {
                return served(
                    flag,
                    default_variant,
                    Reason::Default,
                    rule_id,
                    Some(b),
                    None,
                );
            }
            let split = bucket(&flag.split_salt, key);
            return match variant_index(weights, split).and_then(|i| variants.get(i)) {
                Some(v) => served(flag, *v, Reason::Split, rule_id, Some(b), None),
                None => error(Some(flag), ErrorCode::General),
            };
        }
        if flag.weights.is_empty() {
            let reason = if flag.is_static {
                Reason::Static
            } else {
                Reason::Default
            };
            return served(flag, default_variant, reason, None, None, None);
        }
        let rollout = env
            .and_then(|e| e.rollout_bp)
            .or_else(|| flag.ramp.map(|r| ramp_bp(r, now)))
            .or(def.rollout_bp)
            .unwrap_or(BUCKETS);
        let key = match bucketing_key(def, ctx) {
            Ok(k) => k,
            Err(code) => return error(Some(flag), code),
        };
        let b = bucket(&def.key, key);
        if u32::from(b) >= rollout {
            return served(flag, default_variant, Reason::Default, None, Some(b), None);
        }
        let split = bucket(&flag.split_salt, key);
        match variant_index(&flag.weights, split) {
            Some(v) => served(flag, v, Reason::Split, None, Some(b), None),
            None => error(Some(flag), ErrorCode::General),
        }
    }
}

/// The bucketing key of `ctx` for `flag`: the targeting key, or the string attribute named by
/// `bucket_by`. Missing or empty is `TARGETING_KEY_MISSING`, not a string `INVALID_CONTEXT`.
fn bucketing_key<'c>(flag: &Flag, ctx: &'c EvaluationContext) -> Result<&'c str, ErrorCode> {
    let key = match flag.bucket_by.as_deref() {
        None => ctx.targeting_key.as_deref().map(Ok),
        Some(attr) => ctx.get(attr).map(|a| match a {
            AttrRef::Str(s) => Ok(s),
            AttrRef::Value(AttributeValue::String(s)) => Ok(s.as_str()),
            AttrRef::Value(_) => Err(ErrorCode::InvalidContext),
        }),
    };
    match key {
        Some(Ok(k)) if !k.is_empty() => Ok(k),
        Some(Err(code)) => Err(code),
        _ => Err(ErrorCode::TargetingKeyMissing),
    }
}

/// The rollout of a ramp at `now`: `from` before the start, `to` from the end on, linear between.
fn ramp_bp((start, end, from, to): (i64, i64, u32, u32), now: i64) -> u32 {
    if now <= start {
        return from;
    }
    if now >= end {
        return to;
    }
    let span = i128::from(end) - i128::from(start);
    let done = i128::from(now) - i128::from(start);
    let value = i128::from(from) + (i128::from(to) - i128::from(from)) * done / span;
    u32::try_from(value.clamp(0, i128::from(BUCKETS))).unwrap_or(BUCKETS)
}

fn served<'a>(
    flag: &'a CompiledFlag,
    variant: usize,
    reason: Reason,
    rule_id: Option<&'a str>,
    bucket: Option<u16>,
    disabled_by: Option<DisabledBy>,
) -> Evaluation<'a> {
    match flag.def.variants.get(variant) {
        Some(v) => Evaluation {
            value: &v.value,
            variant: Some(&v.key),
            reason,
            rule_id,
            bucket,
            environment_override: None,
            error_code: None,
            disabled_by,
        },
        None => error(Some(flag), ErrorCode::General),
    }
}

/// An error result; it carries the flag's default value so that a caller without its own default
/// still has one.
fn error<'a>(flag: Option<&'a CompiledFlag>, code: ErrorCode) -> Evaluation<'a> {
    let value = flag
        .and_then(|f| f.def.variants.get(f.default_variant))
        .map_or(&NULL, |v| &v.value);
    Evaluation {
        value,
        variant: None,
        reason: Reason::Error,
        rule_id: None,
        bucket: None,
        environment_override: None,
        error_code: Some(code),
        disabled_by: None,
    }
}

fn attribute_in(ctx: &EvaluationContext, name: &str, allowed: &[String]) -> bool {
    match ctx.get(name) {
        Some(AttrRef::Str(s)) => allowed.iter().any(|a| a == s),
        Some(AttrRef::Value(AttributeValue::String(s))) => allowed.iter().any(|a| a == s),
        _ => false,
    }
}

fn group_matches(group: &Group, ctx: &EvaluationContext) -> bool {
    match group {
        Group::All(gs) => gs.iter().all(|g| group_matches(g, ctx)),
        Group::Any(gs) => gs.iter().any(|g| group_matches(g, ctx)),
        Group::None(gs) => !gs.iter().any(|g| group_matches(g, ctx)),
        Group::Leaf(c) => condition_matches(c, ctx),
    }
}

fn condition_matches(c: &CompiledCondition, ctx: &EvaluationContext) -> bool {
    let attr = ctx.get(&c.attribute);
    if let Test::IsSet = c.test {
        return attr.is_some() != c.negate;
    }
    // A missing attribute matches nothing, negated or not: "not in [US]" does not target users
    // whose country is unknown.
    let Some(attr) = attr else { return false };
    let holds = match attr {
        AttrRef::Str(s) => scalar_test(c, Scalar::Str(s)),
        AttrRef::Value(v) => value_test(c, v),
    };
    holds != c.negate
}

#[derive(Clone, Copy)]
enum Scalar<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
}

fn value_test(c: &CompiledCondition, v: &AttributeValue) -> bool {
    match v {
        AttributeValue::String(s) => scalar_test(c, Scalar::Str(s)),
        AttributeValue::Number(n) => scalar_test(c, Scalar::Num(*n)),
        AttributeValue::Bool(b) => scalar_test(c, Scalar::Bool(*b)),
        // Lists hold when any element holds; nested lists are flattened by the same rule.
        AttributeValue::List(items) => items.iter().any(|i| value_test_shallow(c, i)),
    }
}

/// Lists inside lists are not looked into, which bounds the work per attribute.
fn value_test_shallow(c: &CompiledCondition, v: &AttributeValue) -> bool {
    match v {
        AttributeValue::List(_) => false,
        other => value_test(c, other),
    }
}

fn literal_eq(l: &Literal, s: Scalar<'_>, ci: bool) -> bool {
    match (l, s) {
        (Literal::Str(a), Scalar::Str(b)) if ci => *a == b.to_lowercase(),
        (Literal::Str(a), Scalar::Str(b)) => a == b,
        (Literal::Num(a), Scalar::Num(b)) => a == &b,
        (Literal::Bool(a), Scalar::Bool(b)) => *a == b,
        _ => false,
    }
}

fn scalar_test(c: &CompiledCondition, s: Scalar<'_>) -> bool {
    fn text(s: Scalar<'_>, ci: bool) -> Option<std::borrow::Cow<'_, str>> {
        match s {
            Scalar::Str(t) if ci => Some(t.to_lowercase().into()),
            Scalar::Str(t) => Some(t.into()),
            _ => None,
        }
    }
    let text = |s| text(s, c.case_insensitive);
    match &c.test {
        Test::In(lits) => lits.iter().any(|l| literal_eq(l, s, c.case_insensitive)),
        Test::Equals(l) => literal_eq(l, s, c.case_insensitive),
        Test::StartsWith(p) => text(s).is_some_and(|t| t.starts_with(p.as_str())),
        Test::EndsWith(p) => text(s).is_some_and(|t| t.ends_with(p.as_str())),
        Test::Contains(p) => text(s).is_some_and(|t| t.contains(p.as_str())),
        // Case-insensitivity is compiled into the regex.
        Test::Regex(r) => matches!(s, Scalar::Str(t) if r.is_match(t)),
        Test::Number(cmp, lit) => match s {
            Scalar::Num(n) => n.partial_cmp(lit).is_some_and(|o| cmp.holds(o)),
            _ => false,
        },
        Test::Date(cmp, lit) => {
            let ms = match s {
                Scalar::Str(t) => parse_instant_ms(t),
                // Fractions of a millisecond are dropped; out-of-range numbers never match.
                Scalar::Num(n) if n.is_finite() && n.abs() < 9.0e15 => Some(n as i64),
                _ => None,
            };
            ms.is_some_and(|ms| cmp.holds(ms.cmp(lit)))
        }
        Test::Semver(cmp, lit) => match s {
            Scalar::Str(t) => parse_semver(t).is_some_and(|v| cmp.holds(v.cmp_precedence(lit))),
            _ => false,
        },
        Test::IsSet => true,
    }
}

/// Why a JSON flag set could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The text is not a JSON array of flags; `path` names where (e.g. `[2].variants[0].weight_bp`).
    #[error("{path}: {message}")]
    Parse {
        /// Path of the offending value.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The flags parsed but are not valid.
    #[error("{} invalid field(s), first: {}", .0.len(), .0.first().map(|e| e.to_string()).unwrap_or_default())]
    Invalid(Vec<ValidationError>),
}

impl LoadError {
    /// The OFREP error code of a flag set that failed to load, as evaluation would report it.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::ParseError
    }
}

impl FlagSet {
    /// Parses a JSON array of flags (the documented format) and compiles it.
    ///
    /// ```
    /// let err = flags::FlagSet::from_json(r#"[{"key": "x", "type": "boolean", "status": "on"}]"#)
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("[0].status:"), "{err}");
    /// ```
    pub fn from_json(text: &str) -> Result<FlagSet, LoadError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let flags: Vec<Flag> =
            serde_path_to_error::deserialize(de).map_err(|e| LoadError::Parse {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        FlagSet::compile(flags).map_err(LoadError::Invalid)
    }
}
