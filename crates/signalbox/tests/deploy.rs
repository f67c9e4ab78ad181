//! The operations files under `deploy/` against the real tools and the real binary:
//!
//! - `promtool check rules` and `promtool test rules` pass on the Prometheus rules;
//! - the Grafana dashboards are dashboard models whose every query is valid PromQL;
//! - every metric a rule or a dashboard names is one a running `signalbox serve` exports after
//!   traffic (or a series the recording rules record, or one Prometheus makes itself);
//! - a real Prometheus scrapes a real signalbox: the target is up with no scrape error and a rate
//!   over `model_api_tokens_total` returns data; `promtool check metrics` finds nothing to report
//!   in a scrape.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package (`scripts/test` installs
//! it); the tests fail, never skip, without them.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{describe, json_lines, run_ok, signalbox, Server};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn rule_files() -> [PathBuf; 2] {
    let dir = deploy_dir().join("prometheus");
    [dir.join("recording-rules.yml"), dir.join("alert-rules.yml")]
}

fn dashboard_files() -> Vec<PathBuf> {
    let dir = deploy_dir().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "four dashboards: {files:?}");
    files
}

fn promtool() -> Command {
    Command::new("promtool")
}

/// Runs a tool that must succeed; its stdout and stderr together.
fn run_tool(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: {e} (Debian package `prometheus`; scripts/test installs it)")
    });
    assert!(out.status.success(), "{}", describe(what, &out));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let report = run_tool(
        promtool().arg("check").arg("rules").args(rule_files()),
        "promtool check rules",
    );
    assert_eq!(report.matches("SUCCESS").count(), 2, "{report}");

    // The example configuration is valid, and so is its commented bearer-token variant.
    let example = deploy_dir().join("prometheus/prometheus.yml");
    let report = run_tool(
        promtool().args(["check", "config"]).arg(&example),
        "promtool check config",
    );
    assert!(
        report.contains("is valid prometheus config file syntax"),
        "{report}"
    );
    let text = std::fs::read_to_string(&example).unwrap();
    let bearer: String = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("# ") {
            Some(rest)
                if ["authorization:", "type: Bearer", "credentials_file:"]
                    .iter()
                    .any(|k| rest.trim_start().starts_with(k)) =>
            {
                format!("{}{rest}\n", &l[..l.find('#').unwrap()])
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(
        bearer.contains("\n    authorization:\n      type: Bearer\n"),
        "{bearer}"
    );
    let dir = tempfile::tempdir().unwrap();
    for file in rule_files() {
        std::fs::copy(&file, dir.path().join(file.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("token"), "secret").unwrap();
    let bearer = bearer.replace("/etc/prometheus/signalbox-token", "token");
    std::fs::write(dir.path().join("prometheus.yml"), bearer).unwrap();
    run_tool(
        promtool()
            .current_dir(dir.path())
            .args(["check", "config", "prometheus.yml"]),
        "promtool check config (bearer variant)",
    );

    let tests_dir = deploy_dir().join("prometheus/tests");
    let mut tests: Vec<String> = std::fs::read_dir(&tests_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".test.yml"))
        .collect();
    tests.sort();
    assert!(tests.len() >= 4, "{tests:?}");
    let report = run_tool(
        promtool()
            .current_dir(&tests_dir)
            .args(["test", "rules"])
            .args(&tests),
        "promtool test rules",
    );
    assert_eq!(report.matches("SUCCESS").count(), tests.len(), "{report}");
    assert!(!report.contains("FAILED"), "{report}");

    // Every alert has a unit test that expects it to fire.
    let tested: String = tests
        .iter()
        .map(|t| std::fs::read_to_string(tests_dir.join(t)).unwrap())
        .collect();
    for alert in rule_items(&rule_files()[1], "alert") {
        assert!(
            tested.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels"
            )),
            "no promtool test expects {alert} to fire"
        );
    }
}

/// The values of `key:` items in a rule file (`record`, `alert`, `expr`), block scalars
/// (`expr: |`) joined into one line. The files are written in this one style, so this is all
/// the YAML that is needed.
fn rule_items(path: &Path, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let prefix = format!("{key}:");
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        i += 1;
        let Some(value) = trimmed.strip_prefix(&prefix) else {
            continue;
        };
        let value = value.trim();
        if value == "|" || value == ">-" || value == ">" {
            let indent = line.len() - line.trim_start().len();
            let mut block = Vec::new();
            while i < lines.len()
                && (lines[i].trim().is_empty()
                    || lines[i].len() - lines[i].trim_start().len() > indent)
            {
                block.push(lines[i].trim());
                i += 1;
            }
            items.push(block.join(" "));
        } else {
            items.push(value.to_owned());
        }
    }
    items
}

/// Every query of a dashboard: panel targets and variable queries.
fn dashboard_queries(dashboard: &Value) -> (Vec<String>, Vec<String>) {
    let mut exprs = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = stack.pop() {
        if let Some(inner) = panel["panels"].as_array() {
            stack.extend(inner);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| v["query"]["query"].as_str().unwrap().to_owned())
        .collect();
    (exprs, variables)
}

/// A dashboard query as plain PromQL: Grafana's variables replaced by values of their kind.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__range", "6h")
        .replace("$__interval", "1m")
        .replace("$tenant_id", ".*")
}

#[test]
fn dashboards_are_grafana_models_with_valid_promql() {
    let mut checks = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for file in dashboard_files() {
        let name = file.display().to_string();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "{name}");
        assert!(!d["title"].as_str().unwrap().is_empty(), "{name}");
        assert!(!d["uid"].as_str().unwrap().is_empty(), "{name}");
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |n: &str| {
            vars.iter()
                .find(|v| v["name"] == n)
                .unwrap_or_else(|| panic!("{name}: no ${n}"))
        };
        assert_eq!(var("datasource")["type"], "datasource", "{name}");
        assert_eq!(var("datasource")["query"], "prometheus", "{name}");
        assert_eq!(var("tenant_id")["type"], "query", "{name}");
        assert_eq!(var("tenant_id")["includeAll"], true, "{name}");

        let mut ids = BTreeSet::new();
        for panel in d["panels"].as_array().unwrap() {
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{name}: duplicate panel id"
            );
            let pos = &panel["gridPos"];
            assert!(
                pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24,
                "{name}"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: {}",
                panel["title"]
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(
                !targets.is_empty(),
                "{name}: {} has no query",
                panel["title"]
            );
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}");
                assert!(t["refId"].is_string(), "{name}");
            }
        }
        let (exprs, _) = dashboard_queries(&d);
        assert!(
            exprs
                .iter()
                .any(|e| e.contains("tenant_id=~\"$tenant_id\"")),
            "{name}: no panel uses $tenant_id"
        );
        for expr in exprs {
            n += 1;
            checks.push_str(&format!(
                "      - record: dashboard:query:{n}\n        expr: |\n          {}\n",
                as_promql(&expr)
            ));
        }
    }
    // promtool parses every query as a recording rule's expression.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboards.yml");
    std::fs::write(&path, &checks).unwrap();
    let report = run_tool(
        promtool().args(["check", "rules"]).arg(&path),
        "promtool check rules (dashboard queries)",
    );
    assert!(
        report.contains(&format!("SUCCESS: {n} rules found")),
        "{report}\n{checks}"
    );
}

/// The names of the series an expression selects: identifiers that are not functions,
/// keywords, label names, or inside strings, label matchers or range brackets.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations may be followed by `by (…)` before their parenthesis.
    const KEYWORDS: [&str; 22] = [
        "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan",
        "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
        "group",
    ];
    const LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |mut i: usize, close: char| {
        while i < chars.len() && chars[i] != close {
            i += 1;
        }
        i + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            // Strings (no escaped quotes in these files).
            i = skip_to(i + 1, c);
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let followed_by_paren = chars.get(next) == Some(&'(');
            if LISTS.contains(&ident.as_str()) {
                if followed_by_paren {
                    i = skip_to(next, ')');
                }
            } else if !followed_by_paren && !KEYWORDS.contains(&ident.as_str()) {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_name_extractor_finds_series_and_nothing_else() {
    let names = metric_names(
        r#"sum by (tenant_id, le) (rate(a_total{status=~"5..",x="$y"}[5m] offset 1w)) / on (job) group_left (b)
           histogram_quantile(0.95, c_bucket) > 2 * 0.001 + max without (x) (e_total) and d:rec:rate5m unless absent(up{job="s"}) or 1e9"#,
    );
    let expected: BTreeSet<String> = ["a_total", "c_bucket", "d:rec:rate5m", "e_total", "up"]
        .map(String::from)
        .into();
    assert_eq!(names, expected);
}

/// The sample names an OpenMetrics exposition can carry, from its `# TYPE` lines: families are
/// listed even before their first sample.
fn exported_sample_names(openmetrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in openmetrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            "gaugehistogram" => &["_bucket", "_gcount", "_gsum"],
            "summary" => &["", "_count", "_sum", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{family}{suffix}"));
        }
    }
    names
}

/// Series Prometheus makes itself for every target or alert.
const PROMETHEUS_SERIES: [&str; 3] = ["up", "ALERTS", "ALERTS_FOR_STATE"];

/// One HTTP/1.1 request over a fresh connection; the status and the (de-chunked) body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    write!(conn, "{head}\r\n{body}").unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head
        .lines()
        .any(|l| l.replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(&raw[split..])
    } else {
        raw[split..].to_vec()
    };
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&body[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        let data = &body[eol + 2..];
        out.extend_from_slice(&data[..size]);
        body = &data[size + 2..];
    }
    out
}

/// A signalbox with a tenant and a write key.
struct Signalbox {
    _dir: tempfile::TempDir,
    server: Server,
    key: String,
}

fn start_signalbox() -> Signalbox {
    let dir = tempfile::tempdir().unwrap();
    let created = json_lines(&run_ok(
        signalbox(dir.path()).args(["tenants", "create", "deploy"]),
    ));
    let tenant = created[0]["tenant_id"].as_str().unwrap().to_owned();
    let key = json_lines(&run_ok(signalbox(dir.path()).args([
        "keys",
        "create",
        "--tenant",
        &tenant,
        "--scopes",
        "read,write",
    ])))[0]["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = Server::start(&mut signalbox(dir.path()));
    Signalbox {
        _dir: dir,
        server,
        key,
    }
}

impl Signalbox {
    /// Sends one batch of LLM events (a priced and an unpriced, failed model call, a
    /// conversation start, a message and an integration call) with ids unique to `batch`, and a few ordinary requests.
    fn traffic(&self, batch: u32) {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let events = serde_json::json!([
            {"type": "model_call", "id": format!("m{batch}"), "time": now, "provider": "openai",
             "model": "gpt-4o", "operation": "chat", "conversation_id": "c1", "duration_ms": 812.5,
             "input_tokens": 120, "output_tokens": 40, "status": "success"},
            // A self-hosted model the price table does not know: stored unpriced.
            {"type": "model_call", "id": format!("u{batch}"), "time": now, "provider": "vllm",
             "model": "in-house-chat-7b", "operation": "chat", "conversation_id": "c1",
             "duration_ms": 95.0, "input_tokens": 30, "output_tokens": 12, "status": "error",
             "error_type": "timeout"},
            {"type": "conversation_started", "id": format!("s{batch}"), "time": now,
             "conversation_id": format!("c{batch}"), "channel": "web"},
            {"type": "message_processed", "id": format!("p{batch}"), "time": now,
             "conversation_id": "c1", "channel": "web", "direction": "inbound", "message_type": "text"},
            {"type": "integration_call", "id": format!("i{batch}"), "time": now,
             "integration_id": "crm", "integration_type": "http", "status": "success", "duration_ms": 30}
        ])
        .to_string();
        let auth = format!("Bearer {}", self.key);
        let (status, reply) = http(
            &self.server.addr,
            "POST",
            "/api/v1/llm/events",
            &[("authorization", &auth)],
            &events,
        );
        assert!(
            (200..300).contains(&status),
            "POST /api/v1/llm/events: {status} {reply}\nserver log: {:?}",
            self.server.log()
        );
        for path in ["/health", "/api/v1/health", "/api/v1/nope"] {
            http(
                &self.server.addr,
                "GET",
                path,
                &[("authorization", &auth)],
                "",
            );
        }
    }

    fn scrape(&self, accept: &str) -> String {
        let (status, body) = http(
            &self.server.addr,
            "GET",
            "/metrics",
            &[("accept", accept)],
            "",
        );
        assert_eq!(status, 200, "{body}");
        body
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

#[test]
fn every_metric_named_by_a_rule_or_a_dashboard_is_exported() {
    let sb = start_signalbox();
    sb.traffic(1);
    let exported = exported_sample_names(&sb.scrape(OPENMETRICS));
    assert!(exported.contains("http_requests_total"), "{exported:?}");

    let recorded: BTreeSet<String> = rule_items(&rule_files()[0], "record").into_iter().collect();
    let mut used: Vec<(String, String)> = Vec::new();
    for file in rule_files() {
        for expr in rule_items(&file, "expr") {
            for name in metric_names(&expr) {
                used.push((
                    name,
                    format!("{}: {expr}", file.file_name().unwrap().to_string_lossy()),
                ));
            }
        }
    }
    for file in dashboard_files() {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let (exprs, variables) = dashboard_queries(&d);
        let origin = file.file_name().unwrap().to_string_lossy().into_owned();
        for expr in exprs {
            for name in metric_names(&expr) {
                used.push((name, format!("{origin}: {expr}")));
            }
        }
        for query in variables {
            // label_values(metric, label)
            let metric = query
                .strip_prefix("label_values(")
                .and_then(|q| q.split(',').next())
                .unwrap_or_else(|| panic!("{origin}: unexpected variable query {query}"));
            used.push((metric.trim().to_owned(), format!("{origin}: {query}")));
        }
    }
    assert!(used.len() > 50, "the extractor found too little: {used:?}");
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| {
            !exported.contains(name)
                && !recorded.contains(name)
                && !PROMETHEUS_SERIES.contains(&name.as_str())
        })
        .map(|(name, origin)| format!("{name}  (in {origin})"))
        .collect();
    assert!(
        missing.is_empty(),
        "named but not exported by signalbox:\n{}\n\nexported: {exported:?}",
        missing.join("\n")
    );
}

/// A child process killed (and reaped) on drop, so a failed assertion leaves nothing running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_signalbox_and_sees_token_rates() {
    let sb = start_signalbox();
    sb.traffic(0);

    // promtool check metrics on the 0.0.4 text after traffic: nothing to report.
    let text = sb.scrape("text/plain; version=0.0.4");
    let mut check = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package `prometheus`; scripts/test installs it)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics ({}):\n{report}",
        out.status
    );

    // The shipped rules are loaded too, so the recorded series are checked against real data.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    let [recording, alerts] = rule_files().map(|p| p.canonicalize().unwrap());
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: signalbox\n    static_configs:\n      - targets: [\"{}\"]\n",
            recording.display(),
            alerts.display(),
            sb.server.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let prom_addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prometheus = ChildGuard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus runs (Debian package `prometheus`; scripts/test installs it)"),
    );
    let prom_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    // What must become true, polled until a deadline while traffic keeps flowing: the target is
    // up without a scrape error, the token rate has input and output samples above 0, the
    // recording rules produce the token total and both SLIs for the job, and the scrapes
    // themselves are counted.
    let token_rate = "sum by (token_type) (rate(model_api_tokens_total[1m]))";
    let recorded = [
        r#"tenant_model:model_api_tokens_total:sum{token_type="total",job="signalbox"}"#,
        r#"job:sli_errors:ratio_rate5m{job="signalbox"}"#,
        r#"job:sli_latency_slow:ratio_rate5m{job="signalbox"}"#,
        // Scrapes count themselves, which SignalboxRequestMetricsAbsent relies on.
        r#"http_requests_total{job="signalbox",endpoint="/metrics"}"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut batch = 1;
    let mut last = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "deadline passed; last answer: {last}\nprometheus log:\n{}",
            prom_log()
        );
        // Fresh events each round, so the counters keep growing between scrapes.
        sb.traffic(batch);
        batch += 1;
        if TcpStream::connect(&prom_addr).is_err() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let (status, body) = http(&prom_addr, "GET", "/api/v1/targets", &[], "");
        last = body.clone();
        let up = status == 200 && {
            let v: Value = serde_json::from_str(&body).unwrap();
            let targets = v["data"]["activeTargets"].as_array().unwrap();
            targets.iter().any(|t| {
                let error = t["lastError"].as_str().unwrap_or("");
                assert!(error.is_empty(), "scrape error: {error}\n{body}");
                t["labels"]["job"] == "signalbox" && t["health"] == "up"
            })
        };
        let done = up && {
            let (result, body) = prom_query(&prom_addr, token_rate);
            last = body.clone();
            let types: BTreeSet<&str> = result
                .iter()
                .filter(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|x| x.parse::<f64>().ok())
                        .is_some_and(|x| x > 0.0)
                })
                .filter_map(|s| s["metric"]["token_type"].as_str())
                .collect();
            assert!(!types.contains("total"), "token_type is exclusive: {body}");
            types.contains("input")
                && types.contains("output")
                && recorded.iter().all(|q| {
                    let (result, body) = prom_query(&prom_addr, q);
                    last = body;
                    !result.is_empty()
                })
        };
        if done {
            break;
        }
        // Prometheus scrapes and evaluates every second; ask again after part of one.
        std::thread::sleep(Duration::from_millis(250));
    }

    // Every shipped rule evaluated without error on the real series.
    let (status, body) = http(&prom_addr, "GET", "/api/v1/rules", &[], "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut rules = 0;
    for group in v["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            rules += 1;
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }
    assert_eq!(rules, 44, "{body}");
}

/// An instant query's result vector, and the whole answer for failure messages.
fn prom_query(addr: &str, query: &str) -> (Vec<Value>, String) {
    let path = format!("/api/v1/query?query={}", encode_query(query));
    let (status, body) = http(addr, "GET", &path, &[], "");
    assert_eq!(status, 200, "{query}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    (v["data"]["result"].as_array().unwrap().clone(), body)
}
