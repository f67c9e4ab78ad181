//! The label cardinality guard: the tenant one, and the same guard for every label whose values
//! a client chooses (provider, model, channel, …).

use std::collections::HashSet;
use std::sync::RwLock;

/// The label value shared by tenants that did not get their own.
pub const OTHER: &str = "other";

/// Admits at most `limit` distinct tenant ids as label values; every later tenant is `other`.
///
/// Admission is first come, first served and lasts for the life of the process: a series, once
/// created, never changes its label, so the number of `tenant_id` values is bounded by
/// `limit + 2` (`other` and `unknown`) whatever the traffic.
///
/// ```
/// let guard = telemetry::TenantLabels::new(1);
/// assert_eq!(guard.label("tn_a"), "tn_a");
/// assert_eq!(guard.label("tn_b"), "other");
/// assert_eq!(guard.label("tn_a"), "tn_a");
/// ```
#[derive(Debug)]
pub struct TenantLabels {
    limit: usize,
    admitted: RwLock<HashSet<String>>,
}

impl TenantLabels {
    pub fn new(limit: usize) -> TenantLabels {
        TenantLabels {
            limit,
            admitted: RwLock::new(HashSet::new()),
        }
    }

    /// Whether `value` has its own label value already (never admits it).
    pub fn is_admitted(&self, value: &str) -> bool {
        self.admitted
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(value)
    }

    /// How many distinct values may have their own label value.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The label value to use for `tenant_id`.
    pub fn label<'a>(&self, tenant_id: &'a str) -> &'a str {
        // A poisoned lock only means another thread panicked mid-insert; the set is still valid.
        let admitted = self.admitted.read().unwrap_or_else(|e| e.into_inner());
        if admitted.contains(tenant_id) {
            return tenant_id;
        }
        if admitted.len() >= self.limit {
            return OTHER;
        }
        drop(admitted);
        let mut admitted = self.admitted.write().unwrap_or_else(|e| e.into_inner());
        if admitted.len() < self.limit {
            admitted.insert(tenant_id.to_owned());
            tenant_id
        } else if admitted.contains(tenant_id) {
            tenant_id
        } else {
            OTHER
        }
    }
}

/// A guard for any label whose values come from clients (`model`, `provider`, `channel`, …):
/// the first `limit` distinct values keep their name, every later one is [`OTHER`].
///
/// ```
/// let models = telemetry::LabelGuard::new(2);
/// assert_eq!(models.label("gpt-4o"), "gpt-4o");
/// assert_eq!(models.label("claude-sonnet-4"), "claude-sonnet-4");
/// assert_eq!(models.label("hostile-1"), "other");
/// ```
pub type LabelGuard = TenantLabels;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn label_values_stay_bounded_and_stable(
            limit in 0usize..8,
            ids in proptest::collection::vec("[a-j]", 0..200),
        ) {
            let guard = TenantLabels::new(limit);
            let mut first_label = std::collections::HashMap::new();
            for id in &ids {
                let label = guard.label(id).to_owned();
                prop_assert!(label == *id || label == OTHER);
                // A tenant's label never changes once given.
                let seen = first_label.entry(id.clone()).or_insert_with(|| label.clone());
                prop_assert_eq!(&*seen, &label);
            }
            let distinct: HashSet<_> = first_label.values().filter(|l| *l != OTHER).collect();
            prop_assert!(distinct.len() <= limit);
        }
    }
}
