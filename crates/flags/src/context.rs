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
