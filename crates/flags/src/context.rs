//! The evaluation context: a targeting key plus named attributes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An attribute value: string, number, boolean or a list of those.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
    /// A list; a condition holds for a list when it holds for at least one element.
    List(Vec<AttributeValue>),
}

/// Who or what a flag is evaluated for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationContext {
    /// The default bucketing key (usually the user id), attribute name `targetingKey` in rules.
    #[serde(
        default,
        rename = "targetingKey",
        skip_serializing_if = "Option::is_none"
    )]
    pub targeting_key: Option<String>,
    /// Named attributes (`tenant`, `role`, `tier`, `region`, `segment`, `device`, custom ones).
    #[serde(default, flatten)]
    pub attributes: BTreeMap<String, AttributeValue>,
}

impl EvaluationContext {
    /// A context with only a targeting key.
    pub fn with_key(key: impl Into<String>) -> Self {
        Self {
            targeting_key: Some(key.into()),
            attributes: BTreeMap::new(),
        }
    }

    /// Adds an attribute (builder style).
    pub fn attr(mut self, name: impl Into<String>, value: AttributeValue) -> Self {
        self.attributes.insert(name.into(), value);
        self
    }

    /// Looks an attribute up; `targetingKey` is not in `attributes` but is reported as a string.
    pub(crate) fn get(&self, name: &str) -> Option<AttrRef<'_>> {
        if name == TARGETING_KEY {
            return self.targeting_key.as_deref().map(AttrRef::Str);
        }
        self.attributes.get(name).map(AttrRef::Value)
    }
}

/// The attribute name under which rules see the targeting key.
pub const TARGETING_KEY: &str = "targetingKey";

/// A borrowed attribute, so that the targeting key needs no allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttrRef<'a> {
    Str(&'a str),
    Value(&'a AttributeValue),
}

impl From<&str> for AttributeValue {
    fn from(s: &str) -> Self {
        AttributeValue::String(s.to_owned())
    }
}

impl From<f64> for AttributeValue {
    fn from(n: f64) -> Self {
        AttributeValue::Number(n)
    }
}

impl From<bool> for AttributeValue {
    fn from(b: bool) -> Self {
        AttributeValue::Bool(b)
    }
}

/// Why a JSON evaluation context was refused (OFREP's `INVALID_CONTEXT`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("context.{path}: {message}")]
pub struct ContextError {
    /// Path of the offending member, e.g. `targetingKey` or `tags[2]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Deepest object nesting a context may have, so a hostile context cannot exhaust the stack.
pub const MAX_CONTEXT_DEPTH: usize = 8;

impl EvaluationContext {
    /// Reads a context as OpenFeature clients send it: a JSON object with an optional string
    /// `targetingKey` and attributes. `null` members count as absent; nested objects are flattened
    /// into dotted names (`{"user": {"plan": "pro"}}` is attribute `user.plan`), so rules can
    /// target structured contexts. Refused: a context that is not an object, a non-string
    /// targeting key, and lists holding anything but scalars.
    ///
    /// ```
    /// use flags::{AttributeValue, EvaluationContext};
    /// let json = serde_json::json!({"targetingKey": "u1", "user": {"plan": "pro"}, "beta": null});
    /// let ctx = EvaluationContext::from_json(&json).unwrap();
    /// assert_eq!(ctx.targeting_key.as_deref(), Some("u1"));
    /// assert_eq!(ctx.attributes.get("user.plan"), Some(&AttributeValue::from("pro")));
    /// assert!(!ctx.attributes.contains_key("beta"));
    /// assert!(EvaluationContext::from_json(&serde_json::json!({"targetingKey": 7})).is_err());
    /// ```
    pub fn from_json(json: &serde_json::Value) -> Result<Self, ContextError> {
        let serde_json::Value::Object(members) = json else {
            return Err(ContextError {
                path: String::new(),
                message: format!("must be a JSON object, not {}", kind(json)),
            });
        };
        let mut ctx = EvaluationContext::default();
        for (name, value) in members {
            if name == TARGETING_KEY {
                match value {
                    serde_json::Value::Null => {}
                    serde_json::Value::String(key) => {
                        check_targeting_key(key)?;
                        ctx.targeting_key = Some(key.clone());
                    }
                    other => {
                        return Err(ContextError {
                            path: TARGETING_KEY.into(),
                            message: format!("must be a string, not {}", kind(other)),
                        })
                    }
                }
                continue;
            }
            flatten_into(&mut ctx.attributes, name.clone(), value, 0)?;
        }
        Ok(ctx)
    }
}

/// Longest targeting key, in bytes: the longest one exposures and metric events can store.
pub const MAX_TARGETING_KEY_BYTES: usize = 256;

/// A targeting key names a user in stored exposures and metric events, so it is bounded and
/// holds no control characters (NUL cannot even be stored in PostgreSQL text).
fn check_targeting_key(key: &str) -> Result<(), ContextError> {
    if key.len() > MAX_TARGETING_KEY_BYTES {
        return Err(ContextError {
            path: TARGETING_KEY.into(),
            message: format!(
                "must be at most {MAX_TARGETING_KEY_BYTES} bytes, not {}",
                key.len()
            ),
        });
    }
    if key.chars().any(char::is_control) {
        return Err(ContextError {
            path: TARGETING_KEY.into(),
            message: "must not contain control characters (NUL, newlines, ...)".into(),
        });
    }
    Ok(())
}

fn flatten_into(
    out: &mut BTreeMap<String, AttributeValue>,
    name: String,
    value: &serde_json::Value,
    depth: usize,
) -> Result<(), ContextError> {
    use serde_json::Value as J;
    let attribute = match value {
        J::Null => return Ok(()),
        J::Bool(b) => AttributeValue::Bool(*b),
        J::String(s) => AttributeValue::String(s.clone()),
        J::Number(n) => AttributeValue::Number(number(n, &name)?),
        J::Array(items) => {
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                list.push(match item {
                    J::Bool(b) => AttributeValue::Bool(*b),
                    J::String(s) => AttributeValue::String(s.clone()),
                    J::Number(n) => AttributeValue::Number(number(n, &name)?),
                    // A null in a list matches nothing; dropping it keeps the rest usable.
                    J::Null => continue,
                    other => {
                        return Err(ContextError {
                            path: format!("{name}[{i}]"),
                            message: format!(
                                "list elements must be strings, numbers or booleans, not {}",
                                kind(other)
                            ),
                        })
                    }
                });
            }
            AttributeValue::List(list)
        }
        J::Object(members) => {
            if depth + 1 >= MAX_CONTEXT_DEPTH {
                return Err(ContextError {
                    path: name,
                    message: format!("objects may be nested at most {MAX_CONTEXT_DEPTH} deep"),
                });
            }
            for (inner, value) in members {
                flatten_into(out, format!("{name}.{inner}"), value, depth + 1)?;
            }
            return Ok(());
        }
    };
    out.insert(name, attribute);
    Ok(())
}

fn number(n: &serde_json::Number, name: &str) -> Result<f64, ContextError> {
    n.as_f64().ok_or_else(|| ContextError {
        path: name.to_owned(),
        message: format!("{n} is not a representable number"),
    })
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
