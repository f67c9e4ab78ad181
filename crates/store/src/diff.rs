//! Field-level differences between two JSON documents, for the flag audit trail.
//!
//! Objects are compared member by member, recursively; anything else (arrays, scalars, a change
//! of type) is one change of the whole value. Paths are JSON Pointers (RFC 6901).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One changed field. An absent `before` means the field was added, an absent `after` that it
/// was removed (a JSON `null` is a value, and is kept apart from absence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// JSON Pointer to the field, e.g. `/variants` or `/rules/on` (`""` is the whole document).
    pub path: String,
    /// The old value, absent when the field was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The new value, absent when the field was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// The changes that turn `before` into `after`, depth first with object keys in sorted order;
/// empty when the documents are equal.
///
/// ```
/// use serde_json::json;
/// let changes = store::json_diff(
///     &json!({"enabled": true, "meta": {"owner": "a", "tags": [1]}}),
///     &json!({"enabled": true, "meta": {"owner": "b"}, "note": null}),
/// );
/// let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
/// assert_eq!(paths, ["/meta/owner", "/meta/tags", "/note"]);
/// assert_eq!(changes[1].after, None);
/// ```
pub fn json_diff(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_into(&mut String::new(), before, after, &mut out);
    out
}

fn diff_into(path: &mut String, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            // Sorted so the audit reads the same whatever map order serde_json was built with.
            let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                match (old.get(key), new.get(key)) {
                    (Some(o), Some(n)) => diff_into(path, o, n, out),
                    (o, n) => out.push(FieldChange {
                        path: path.clone(),
                        before: o.cloned(),
                        after: n.cloned(),
                    }),
                }
                path.truncate(len);
            }
        }
        _ if before == after => {}
        _ => out.push(FieldChange {
            path: path.clone(),
            before: Some(before.clone()),
            after: Some(after.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map};

    /// Applies changes by walking the pointer's segments from the root, creating objects on the
    /// way: an independent reading of the diff's meaning.
    fn apply(doc: &Value, changes: &[FieldChange]) -> Value {
        let mut doc = doc.clone();
        for change in changes {
            let segments: Vec<String> = change
                .path
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect();
            set(&mut doc, &segments, change.after.clone());
        }
        doc
    }

    fn set(doc: &mut Value, segments: &[String], value: Option<Value>) {
        let Some((first, rest)) = segments.split_first() else {
            *doc = value.unwrap_or(Value::Null);
            return;
        };
        if !doc.is_object() {
            *doc = Value::Object(Map::new());
        }
        let Value::Object(map) = doc else { return };
        if rest.is_empty() {
            match value {
                Some(v) => {
                    map.insert(first.clone(), v);
                }
                None => {
                    map.remove(first);
                }
            }
        } else {
            set(map.entry(first.clone()).or_insert(Value::Null), rest, value);
        }
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ]
    }

    /// Small documents over few keys (some needing escapes), so before/after overlap often.
    fn doc() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec!["a", "b", "c/d", "e~f", ""]),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[ab]", doc(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn applying_the_diff_to_before_gives_after(before in object(), after in object()) {
            let changes = json_diff(&before, &after);
            prop_assert_eq!(apply(&before, &changes), after);
        }

        #[test]
        fn equal_documents_have_no_diff(d in doc()) {
            prop_assert!(json_diff(&d, &d.clone()).is_empty());
        }

        #[test]
        fn every_change_is_a_real_change_at_a_unique_path(before in doc(), after in doc()) {
            let changes = json_diff(&before, &after);
            prop_assert_eq!(changes.is_empty(), before == after);
            let paths: std::collections::BTreeSet<&str> =
                changes.iter().map(|c| c.path.as_str()).collect();
            prop_assert_eq!(paths.len(), changes.len());
            for c in &changes {
                prop_assert_ne!(&c.before, &c.after);
            }
        }
    }

    #[test]
    fn pointer_segments_are_escaped() {
        let changes = json_diff(&json!({"a/b": {"c~d": 1}}), &json!({"a/b": {"c~d": 2}}));
        assert_eq!(
            changes,
            vec![FieldChange {
                path: "/a~1b/c~0d".to_owned(),
                before: Some(json!(1)),
                after: Some(json!(2)),
            }]
        );
    }

    #[test]
    fn a_change_of_type_replaces_the_whole_value() {
        let changes = json_diff(&json!({"x": [1, 2]}), &json!({"x": {"0": 1}}));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "/x");
        assert_eq!(changes[0].before, Some(json!([1, 2])));
        let whole = json_diff(&json!(1), &json!("1"));
        assert_eq!(whole[0].path, "");
    }
}
