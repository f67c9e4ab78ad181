//! Reading an exposition back in tests, with a grammar-based OpenMetrics parser (the format is
//! strict enough that what it accepts, Prometheus accepts).

pub use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};

pub type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// Parses `text`, panicking with the text if it is not valid OpenMetrics.
pub fn parse(text: &str) -> Exposition {
    openmetrics_parser::openmetrics::parse_openmetrics(&without_empty_families(text))
        .unwrap_or_else(|e| panic!("not valid OpenMetrics ({e:?}):\n{text}"))
}

/// Drops the `# HELP` / `# TYPE` / `# UNIT` lines of families that have no samples yet (such as
/// `errors` before the first error). OpenMetrics allows empty families and Prometheus reads
/// them, but openmetrics-parser 0.5 then files the next family's samples under the empty one.
pub fn without_empty_families(text: &str) -> String {
    let family_of = |line: &str| -> Option<String> {
        let rest = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .or_else(|| line.strip_prefix("# UNIT "))?;
        rest.split_whitespace().next().map(str::to_owned)
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if let Some(family) = family_of(line) {
            // A family has samples if a sample line follows before the next family's metadata.
            let has_samples = lines[i + 1..]
                .iter()
                .find(|l| !(l.starts_with('#') && family_of(l).as_deref() == Some(family.as_str())))
                .is_some_and(|l| !l.starts_with('#'));
            if !has_samples {
                continue;
            }
        }
        kept.push(*line);
    }
    let mut out = kept.join("\n");
    out.push('\n');
    out
}

/// The values of a family's samples whose labels include `labels`. Counter families are named
/// without `_total` (`http_requests` holds `http_requests_total`).
pub fn samples(exp: &Exposition, family: &str, labels: &[(&str, &str)]) -> Vec<OpenMetricsValue> {
    let Some(fam) = exp.families.get(family) else {
        return Vec::new();
    };
    fam.iter_samples()
        .filter(|s| {
            let set = s.get_labelset().expect("labels");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| s.value.clone())
        .collect()
}

/// The sum of the matching counter or gauge samples; `None` when nothing matches.
pub fn total(exp: &Exposition, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = samples(exp, family, labels);
    if found.is_empty() {
        return None;
    }
    Some(
        found
            .iter()
            .map(|v| match v {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(g) | OpenMetricsValue::Unknown(g) => g.as_f64(),
                other => panic!("not a scalar: {other:?}"),
            })
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_empty_families_are_dropped() {
        let text = "# HELP a A.\n# TYPE a counter\n# HELP b B.\n# TYPE b gauge\nb 1\n# EOF\n";
        assert_eq!(
            without_empty_families(text),
            "# HELP b B.\n# TYPE b gauge\nb 1\n# EOF\n"
        );
        let full = "# HELP b B.\n# TYPE b gauge\nb 1\n# EOF\n";
        assert_eq!(without_empty_families(full), full);
    }
}
