//! `signalbox feedback redact` as an operator runs it: text lines on stdin, one JSON object per
//! line on stdout, in order; tenant configuration, pseudonyms, Presidio's shape; errors.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use feedback::pii::{api_findings, presidio_results, pseudonym, redact, Detector, EntityType};
use feedback::pii::{PiiConfig, Redaction};
use serde_json::{json, Value};
use support::json_lines;

/// `signalbox feedback redact ARGS` with `input` on stdin, isolated from the environment.
fn redact_cmd(args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_signalbox"));
    cmd.args(["feedback", "redact"])
        .args(args)
        .env_remove("SIGNALBOX_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run signalbox");
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread: a large input must not block on a full stdout pipe.
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn ok_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        support::describe("feedback redact", out)
    );
    json_lines(&String::from_utf8(out.stdout.clone()).unwrap())
}

/// `value` as JSON text read back, so `f32` confidences compare as written (`0.85`, not the
/// widened `0.8500000238418579`).
fn as_written(value: &impl serde::Serialize) -> Value {
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

/// What the library says for `text` with default settings and tag redaction.
fn expected(text: &str, detector: &Detector) -> Value {
    let found = detector.detect(text);
    json!({
        "text_redacted": redact(text, &found, &Redaction::Tag),
        "pii": as_written(&api_findings(text, &found)),
    })
}

#[test]
fn redacts_lines_in_order_with_character_offsets() {
    let lines = [
        "Mail me at jo.doe@example.com or call +44 20 7946 0958",
        "",
        "Müller: müller@example.de",
        "カード 4111 1111 1111 1111 で払いました 🙂",
        "nothing personal here, order 12345-678",
        "IBAN DE89 3704 0044 0532 0130 00, ssn 536-22-8412, ip 2001:db8::1",
        "",
    ];
    let mut input = lines.join("\n");
    input.push('\n');
    let got = ok_lines(&redact_cmd(&[], &[], input.as_bytes()));
    assert_eq!(got.len(), lines.len());
    let detector = Detector::default();
    for (line, value) in lines.iter().zip(&got) {
        assert_eq!(value, &expected(line, &detector), "{line:?}");
    }
    // Character offsets (not bytes) into the original text.
    assert_eq!(
        got[2]["pii"],
        json!([{"type": "EMAIL_ADDRESS", "start": 8, "end": 25, "confidence": 1.0}])
    );
    assert_eq!(got[2]["text_redacted"], "Müller: <EMAIL_ADDRESS>");
    assert_eq!(got[3]["pii"][0]["type"], "CREDIT_CARD");
    assert_eq!(got[3]["pii"][0]["start"], 4);
    assert_eq!(got[3]["pii"][0]["end"], 23);
    assert_eq!(
        got[3]["text_redacted"],
        "カード <CREDIT_CARD> で払いました 🙂"
    );
    assert_eq!(got[1], json!({"text_redacted": "", "pii": []}));
    assert_eq!(got[4]["pii"], json!([]));
    let types: Vec<&str> = got[5]["pii"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["IBAN_CODE", "US_SSN", "IP_ADDRESS"]);
}

#[test]
fn many_lines_keep_their_order_and_a_last_line_without_newline_counts() {
    // Every line distinct, so a reordering or a lost line shows.
    let lines: Vec<String> = (0..20_000)
        .map(|i| match i % 4 {
            0 => format!("line {i}: reach me at user{i}@example.org"),
            1 => format!("line {i}: nothing here"),
            2 => String::new(),
            _ => format!("line {i}: from 10.0.{}.{}", i / 256 % 256, i % 256),
        })
        .collect();
    let input = lines.join("\n");
    let got = ok_lines(&redact_cmd(&[], &[], input.as_bytes()));
    assert_eq!(got.len(), lines.len());
    let detector = Detector::default();
    for (line, value) in lines.iter().zip(&got) {
        assert_eq!(value, &expected(line, &detector), "{line:?}");
    }
    assert_eq!(
        got[0]["text_redacted"],
        "line 0: reach me at <EMAIL_ADDRESS>"
    );
    assert_eq!(
        got[19_999]["text_redacted"],
        "line 19999: from <IP_ADDRESS>"
    );
}

#[test]
fn invalid_utf8_is_replaced_and_offsets_count_the_replacement() {
    let input = b"bad \xff\xfe byte jo@example.org\nnext@example.org\r\n";
    let got = ok_lines(&redact_cmd(&[], &[], input));
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        json!({
            "text_redacted": "bad \u{fffd}\u{fffd} byte <EMAIL_ADDRESS>",
            "pii": [{"type": "EMAIL_ADDRESS", "start": 12, "end": 26, "confidence": 1.0}],
        })
    );
    // A trailing \r belongs to the text, as in `signalbox sentiment`.
    assert_eq!(got[1]["text_redacted"], "<EMAIL_ADDRESS>\r");
}

#[test]
fn presidio_format_uses_presidio_names() {
    let text = "Müller: müller@example.de, +1 415 555 2671";
    let got = ok_lines(&redact_cmd(
        &["--format", "presidio"],
        &[],
        format!("{text}\n").as_bytes(),
    ));
    let found = Detector::default().detect(text);
    assert_eq!(found.len(), 2);
    assert_eq!(got[0]["pii"], as_written(&presidio_results(text, &found)));
    assert_eq!(got[0]["pii"][0]["entity_type"], "EMAIL_ADDRESS");
    assert_eq!(got[0]["pii"][0]["score"], 1.0);
    assert!(got[0]["pii"][0].get("type").is_none());
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn tenant_configuration_applies_its_pii_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config_text = r#"
        [pii]
        entities = ["EMAIL_ADDRESS"]
        allow_list = ["support@example.com"]
        deny_list = ["Project Falcon"]

        [[pii.patterns]]
        name = "ORDER_ID"
        regex = 'ORD-\d{4}-\d{6}'
        confidence = 0.9
    "#;
    let config = write(dir.path(), "tenant.toml", config_text);
    let text = "ORD-2024-558812 about Project Falcon: mail jo@example.org, not \
                support@example.com; call +44 20 7946 0958";
    let got = ok_lines(&redact_cmd(
        &["--feedback-config", &config],
        &[],
        format!("{text}\n").as_bytes(),
    ));
    let types: Vec<&str> = got[0]["pii"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    // Phone numbers are not enabled; the allowed address is not reported.
    assert_eq!(types, ["ORDER_ID", "DENY_LIST", "EMAIL_ADDRESS"]);
    assert_eq!(
        got[0]["text_redacted"],
        "<ORDER_ID> about <DENY_LIST>: mail <EMAIL_ADDRESS>, not support@example.com; call +44 20 7946 0958"
    );
    // The same as the library with the same section.
    let pii: PiiConfig = toml::from_str::<toml::Table>(config_text).unwrap()["pii"]
        .clone()
        .try_into()
        .unwrap();
    assert_eq!(got[0], expected(text, &Detector::new(&pii).unwrap()));
}

#[test]
fn pseudonyms_are_keyed_consistent_and_the_key_is_never_printed() {
    let key = "tenant-a pseudonym key, thirty-two bytes or more";
    let input = b"jo@example.org wrote\nJO@EXAMPLE.ORG again\n";
    let out = redact_cmd(
        &["--pseudonym-key-env", "SB_TEST_PSEUDONYM_KEY"],
        &[("SB_TEST_PSEUDONYM_KEY", key)],
        input,
    );
    let got = ok_lines(&out);
    let want = format!(
        "<EMAIL_ADDRESS_{}>",
        pseudonym(key.as_bytes(), &EntityType::EmailAddress, "jo@example.org")
    );
    assert_eq!(got[0]["text_redacted"], format!("{want} wrote"));
    // E-mail addresses compare in lower case: one pseudonym.
    assert_eq!(got[1]["text_redacted"], format!("{want} again"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(key));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(key));

    let other = ok_lines(&redact_cmd(
        &["--pseudonym-key-env", "SB_TEST_PSEUDONYM_KEY"],
        &[("SB_TEST_PSEUDONYM_KEY", "another tenant's key")],
        input,
    ));
    assert_ne!(other[0]["text_redacted"], got[0]["text_redacted"]);
    assert!(other[0]["text_redacted"]
        .as_str()
        .unwrap()
        .starts_with("<EMAIL_ADDRESS_"));
}

/// A failed run: exit code 1, nothing on stdout, one line on stderr containing every `needle`.
fn assert_fails_naming(out: &Output, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        support::describe("feedback redact", out)
    );
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

#[test]
fn configuration_and_key_errors_name_the_problem_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    assert_fails_naming(
        &redact_cmd(&["--feedback-config", missing], &[], b"x\n"),
        &["--feedback-config", "missing.toml"],
    );

    let unknown = write(dir.path(), "unknown.toml", "[pii]\ncolour = 1\n");
    assert_fails_naming(
        &redact_cmd(&["--feedback-config", &unknown], &[], b"x\n"),
        &["unknown.toml", "pii", "colour"],
    );

    let regex = write(
        dir.path(),
        "regex.toml",
        "[[pii.patterns]]\nname = \"ORDER_ID\"\nregex = 'ORD-(\\d'\nconfidence = 0.9\n",
    );
    assert_fails_naming(
        &redact_cmd(&["--feedback-config", &regex], &[], b"x\n"),
        &["regex.toml", "pii.patterns[0].regex"],
    );

    // Any section is validated, not only [pii].
    let weight = write(dir.path(), "weight.toml", "[policy.weights]\nKIND = 1.0\n");
    assert_fails_naming(
        &redact_cmd(&["--feedback-config", &weight], &[], b"x\n"),
        &["weight.toml", "policy.weights"],
    );

    let pseudonyms = write(dir.path(), "pseudonym.toml", "redaction = \"pseudonym\"\n");
    assert_fails_naming(
        &redact_cmd(&["--feedback-config", &pseudonyms], &[], b"x\n"),
        &["pseudonym.toml", "--pseudonym-key-env"],
    );

    assert_fails_naming(
        &redact_cmd(
            &["--pseudonym-key-env", "SB_TEST_UNSET_PSEUDONYM_KEY"],
            &[],
            b"x\n",
        ),
        &["SB_TEST_UNSET_PSEUDONYM_KEY", "not set"],
    );
}
