//! The Kubernetes HorizontalPodAutoscaler's replica formula ("Algorithm details" of the
//! Kubernetes documentation, task "Horizontal Pod Autoscaling").

/// The HPA's default tolerance (`--horizontal-pod-autoscaler-tolerance`, 0.1): a ratio of
/// current to target metric within 10 % of 1.0 changes nothing.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// `desiredReplicas = ceil(currentReplicas * currentMetricValue / desiredMetricValue)`,
/// skipped (the current count kept) when the ratio `current_metric / target` is within
/// `tolerance` of 1.0, then clamped to `[min_replicas, max_replicas]`.
///
/// As the HPA does, a workload at zero replicas is left at zero (autoscaling is off for a
/// workload someone scaled to zero), and a count outside the bounds is brought to the nearest
/// bound even when the metric is within tolerance. A metric or target that is not a finite
/// number (the target also positive, the metric not negative) gives no recommendation: the
/// current count, clamped. `min_replicas` above `max_replicas` yields `max_replicas`.
///
/// The HPA's other refinements (missing or unready pods' metrics, the scale-down
/// stabilisation window, rate policies) are not modelled here: the stabilisation is what
/// [`crate::ScalingPolicy`]'s cooldown and evaluation period do.
///
/// ```
/// use scaling::{hpa_desired, DEFAULT_TOLERANCE};
/// // 4 replicas at 90 % CPU against a 70 % target: ceil(4 * 90 / 70) = 6.
/// assert_eq!(hpa_desired(4, 90.0, 70.0, DEFAULT_TOLERANCE, 2, 20), 6);
/// // 75 / 70 = 1.07, within 10 %: nothing changes.
/// assert_eq!(hpa_desired(4, 75.0, 70.0, DEFAULT_TOLERANCE, 2, 20), 4);
/// // Idle: ceil(4 * 5 / 70) = 1, held at the minimum.
/// assert_eq!(hpa_desired(4, 5.0, 70.0, DEFAULT_TOLERANCE, 2, 20), 2);
/// ```
pub fn hpa_desired(
    current_replicas: u32,
    current_metric: f64,
    target: f64,
    tolerance: f64,
    min_replicas: u32,
    max_replicas: u32,
) -> u32 {
    if current_replicas == 0 {
        return 0;
    }
    let clamp = |n: u32| n.max(min_replicas).min(max_replicas);
    let usable =
        current_metric.is_finite() && current_metric >= 0.0 && target.is_finite() && target > 0.0;
    if !usable {
        return clamp(current_replicas);
    }
    let ratio = current_metric / target;
    // A NaN or negative tolerance is no tolerance.
    let tolerance = if tolerance.is_finite() && tolerance > 0.0 {
        tolerance
    } else {
        0.0
    };
    if (ratio - 1.0).abs() <= tolerance {
        return clamp(current_replicas);
    }
    let desired = (f64::from(current_replicas) * ratio).ceil();
    let desired = if desired >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // Non-negative and below u32::MAX, so the cast is exact.
        desired as u32
    };
    clamp(desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_examples() {
        // Kubernetes docs: 200m current, 100m target -> double; 50m -> halve.
        let cases = [
            ((1, 200.0, 100.0), 2),
            ((4, 50.0, 100.0), 2),
            ((10, 109.0, 100.0), 10),
            ((10, 105.0, 100.0), 10),
            ((10, 111.0, 100.0), 12),
            ((10, 90.0, 100.0), 10),
            ((10, 89.0, 100.0), 9),
            ((3, 0.0, 100.0), 1),
            ((3, 1e12, 100.0), 50),
            ((3, f64::NAN, 100.0), 3),
            ((3, 50.0, 0.0), 3),
            ((3, -5.0, 100.0), 3),
            ((0, 500.0, 100.0), 0),
            ((60, 100.0, 100.0), 50),
        ];
        for ((current, metric, target), want) in cases {
            assert_eq!(
                hpa_desired(current, metric, target, DEFAULT_TOLERANCE, 1, 50),
                want,
                "{current} {metric} {target}"
            );
        }
    }

    #[test]
    fn bad_bounds_and_tolerance_do_not_panic() {
        assert_eq!(hpa_desired(5, 100.0, 10.0, 0.1, 9, 3), 3);
        assert_eq!(hpa_desired(10, 105.0, 100.0, f64::NAN, 1, 50), 11);
    }
}
