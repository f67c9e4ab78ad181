//! One tenant's share of an OpenMetrics exposition (see [`crate::Metrics::encode_tenant`]).
//!
//! The filter reads the text the registry wrote: a family's metadata lines (`# HELP`, `# TYPE`,
//! `# UNIT`) are held until one of its samples is kept, so a family with none of the tenant's
//! samples is left out entirely, and the result ends with `# EOF` as OpenMetrics requires.
//! Label values are compared after unescaping (`\\`, `\"`, `\n`), so a value containing `}`,
//! `,` or a quote is matched as a whole, never by a substring.

use std::borrow::Cow;

/// The samples of `openmetrics` whose `tenant_id` label equals `tenant_id`, with their
/// families' metadata (without `# EOF`).
pub(crate) fn only_tenant(openmetrics: &str, tenant_id: &str) -> String {
    let mut out = String::new();
    let mut metadata: Vec<&str> = Vec::new();
    let mut metadata_written = false;
    for line in openmetrics.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("# UNIT ")
        {
            // `# HELP` starts a family; its `# TYPE` and `# UNIT` follow before any sample.
            if metadata_written || line.starts_with("# HELP ") {
                metadata.clear();
                metadata_written = false;
            }
            metadata.push(line);
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if label_value(line, "tenant_id").as_deref() != Some(tenant_id) {
            continue;
        }
        if !metadata_written {
            for m in &metadata {
                out.push_str(m);
                out.push('\n');
            }
            metadata_written = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The unescaped value of label `key` on a sample line, if the line has it.
fn label_value<'a>(line: &'a str, key: &str) -> Option<Cow<'a, str>> {
    let open = line.find(['{', ' '])?;
    if line.as_bytes()[open] != b'{' {
        return None;
    }
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.starts_with('}') || rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        rest = rest[eq + 1..].trim_start();
        rest = rest.strip_prefix('"')?;
        // Find the closing quote, skipping escaped characters.
        let bytes = rest.as_bytes();
        let mut i = 0;
        let mut escaped = false;
        while i < bytes.len() {
            match (escaped, bytes[i]) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => break,
                _ => {}
            }
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let raw = &rest[..i];
        rest = &rest[i + 1..];
        if name == key {
            return Some(unescape(raw));
        }
    }
}

fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// A label value escaped for the text formats (`\` `"` and line feed), which
/// prometheus-client 0.23 does not do itself.
pub(crate) fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn label_values_are_read_whole_and_unescaped() {
        let line = r#"x_total{a="tenant_id=\"tn_b\"",tenant_id="tn_a",b="}"} 1"#;
        assert_eq!(label_value(line, "tenant_id").as_deref(), Some("tn_a"));
        assert_eq!(
            label_value(line, "a").as_deref(),
            Some(r#"tenant_id="tn_b""#)
        );
        assert_eq!(label_value(line, "b").as_deref(), Some("}"));
        assert_eq!(label_value("x_total 1", "tenant_id"), None);
        assert_eq!(
            label_value(r#"x{tenant_id="a\\"} 1"#, "tenant_id").as_deref(),
            Some("a\\")
        );
        assert_eq!(label_value(r#"x{my_tenant_id="a"} 1"#, "tenant_id"), None);
    }

    #[test]
    fn families_without_the_tenant_are_left_out() {
        let om = "# HELP a A.\n# TYPE a counter\na_total{tenant_id=\"t1\"} 1\na_created{tenant_id=\"t1\"} 5\na_total{tenant_id=\"t2\"} 2\n\
                  # HELP b B.\n# TYPE b gauge\nb 3\n\
                  # HELP c C.\n# TYPE c gauge\n# UNIT c seconds\nc{tenant_id=\"t2\"} 4\n# EOF\n";
        assert_eq!(
            only_tenant(om, "t1"),
            "# HELP a A.\n# TYPE a counter\na_total{tenant_id=\"t1\"} 1\na_created{tenant_id=\"t1\"} 5\n"
        );
        assert_eq!(
            only_tenant(om, "t2"),
            "# HELP a A.\n# TYPE a counter\na_total{tenant_id=\"t2\"} 2\n# HELP c C.\n# TYPE c gauge\n# UNIT c seconds\nc{tenant_id=\"t2\"} 4\n"
        );
        assert_eq!(only_tenant(om, "t3"), "");
    }

    proptest! {
        #[test]
        fn escape_then_read_gives_the_value_back(value in "[a-z\"\\\\\n},= ]{0,12}") {
            let line = format!("x{{tenant_id=\"{}\",z=\"1\"}} 1", escape(&value));
            let read = label_value(&line, "tenant_id");
            prop_assert_eq!(read.as_deref(), Some(value.as_str()));
        }
    }
}
