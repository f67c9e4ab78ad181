//! Signed research reports (issue 20; seed 004's `generate_research_report`): the document, its
//! canonical JSON encoding, and Ed25519 signing and verification. Pure: the caller passes the
//! statistics (differentially private releases), the time and the signing key.
//!
//! # The file
//!
//! ```json
//! {"report":{...},"signature":{"algorithm":"ed25519","key_id":"3f2a9c1b","public_key":"<base64>","value":"<base64>"}}
//! ```
//!
//! in canonical form: object keys sorted (by their UTF-8 bytes), no insignificant whitespace,
//! strings with only the escapes JSON requires (`"`, `\`, control characters), numbers as
//! `serde_json` writes them; one trailing newline is allowed. The signature is over the
//! domain-separated message [`SIGNING_DOMAIN`] followed by the canonical bytes of the `report`
//! object. A canonical encoding is unique, so a file that differs by any byte from a signed one
//! is either not canonical, or the canonical encoding of a different document (a different
//! report fails the signature; a different signature object fails as a bad signature, a wrong
//! key or a malformed signature). The test flips every byte of a real report and sees each
//! fail.
//!
//! ```
//! use ed25519_dalek::SigningKey;
//! use feedback::report::{sign, verify, Report};
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let report = Report::example();
//! let file = sign(&report, &key).unwrap();
//! let verified = verify(file.as_bytes(), Some(&key.verifying_key())).unwrap();
//! assert_eq!(verified.report, report);
//! let mut altered = file.into_bytes();
//! altered[20] ^= 1;
//! assert!(verify(&altered, None).is_err());
//! ```

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The domain separation prefix of the signed message.
pub const SIGNING_DOMAIN: &[u8] = b"signalbox research report v1\n";
/// The document format named in every report.
pub const REPORT_FORMAT: &str = "signalbox.research_report.v1";
/// The largest report file read or written (1 MiB).
pub const MAX_REPORT_BYTES: usize = 1 << 20;
/// The one signature algorithm.
pub const ALGORITHM: &str = "ed25519";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A research report: the period, the differentially private statistics, the texts that say
/// how they were made and what they cannot say, and the privacy accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Always [`REPORT_FORMAT`].
    pub format: String,
    /// The report's id.
    pub id: String,
    /// The tenant whose feedback it describes.
    pub tenant_id: String,
    /// When it was made, RFC 3339 UTC.
    pub created_at: String,
    /// The period covered.
    pub period: ReportPeriod,
    /// Feedback statistics: item counts, ratings, sentiment, text length.
    pub statistics: Vec<Statistic>,
    /// Alignment with the tenant's principles (the policy score).
    pub alignment: Vec<Statistic>,
    /// Ethics: violations by principle.
    pub ethics: Vec<Statistic>,
    /// How the figures were made.
    pub methodology: String,
    /// What the figures cannot say.
    pub limitations: String,
    /// The privacy accounting.
    pub privacy: PrivacySection,
}

/// The period a report covers: `[from, to)`, dates (`YYYY-MM-DD`, UTC days) and epoch ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportPeriod {
    /// The first day, included.
    pub from: String,
    /// The day after the last, excluded.
    pub to: String,
    /// `from` at 00:00 UTC, epoch ms.
    pub from_ms: i64,
    /// `to` at 00:00 UTC, epoch ms.
    pub to_ms: i64,
}

/// One differentially private release: a metric, its groups and how it was noised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statistic {
    /// The metric (`count`, `rating_mean`, `violation_count`, ...).
    pub metric: String,
    /// The grouping (`none`, `type`, `day`, ...).
    pub group_by: String,
    /// The noise mechanism (`discrete_laplace`, `discrete_gaussian`).
    pub mechanism: String,
    /// The ε this release spent, in units of 10⁻⁹.
    pub epsilon_nanos: u64,
    /// The δ this release spent, in units of 10⁻¹⁵.
    pub delta_femtos: u64,
    /// The noisy releases the values come from (a mean: its sum and its count).
    pub parts: Vec<StatisticPart>,
    /// One value per group (and bin).
    pub groups: Vec<StatisticGroup>,
}

/// One noisy release inside a statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticPart {
    /// `count` or `sum`.
    pub name: String,
    /// The sensitivity the noise is calibrated to.
    pub sensitivity: u64,
    /// Laplace b or Gaussian σ.
    pub scale: f64,
    /// This part's ε.
    pub epsilon: f64,
    /// This part's δ.
    pub delta: f64,
}

/// One group's released value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticGroup {
    /// The group's key (`all` without grouping).
    pub key: String,
    /// The bin within the group (a rating or a principle), for histograms.
    pub bin: Option<String>,
    /// The noisy value; `null` for a mean whose noisy count is not positive.
    pub value: Option<f64>,
    /// Half-width of the 95% interval around the true value.
    pub accuracy_95: Option<f64>,
}

/// The privacy section: what protected the people in the data and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// The mechanisms used, sorted, each once.
    pub mechanisms: Vec<String>,
    /// The neighbouring relation the guarantee is about.
    pub unit: String,
    /// At most this many items per person entered the statistics.
    pub contribution_cap: u32,
    /// The total ε spent (all releases, basic composition), in units of 10⁻⁹.
    pub epsilon_nanos: u64,
    /// The total δ spent, in units of 10⁻¹⁵.
    pub delta_femtos: u64,
    /// The privacy ledger entry recording the spend.
    pub ledger_entry_id: String,
}

/// The longest period one report covers, in days.
pub const MAX_PERIOD_DAYS: i64 = 366;

/// A refused report request: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PeriodError {
    /// `from` or `to`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl ReportPeriod {
    /// The period `[from, to)` from two dates (`YYYY-MM-DD`, UTC days): `from` before `to`, at
    /// most [`MAX_PERIOD_DAYS`] days, and `to` no later than the day after `today_ms`'s day (a
    /// report covers the past).
    pub fn parse(from: &str, to: &str, today_ms: i64) -> Result<ReportPeriod, PeriodError> {
        let day = |field: &'static str, text: &str| -> Result<i64, PeriodError> {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let bad = || PeriodError {
                field,
                message: "must be a date, YYYY-MM-DD".to_owned(),
            };
            if text.len() != 10 {
                return Err(bad());
            }
            let date = time::Date::parse(text, &format).map_err(|_| bad())?;
            Ok(date.midnight().assume_utc().unix_timestamp() * 1000)
        };
        let from_ms = day("from", from)?;
        let to_ms = day("to", to)?;
        if to_ms <= from_ms {
            return Err(PeriodError {
                field: "to",
                message: "must be after from".to_owned(),
            });
        }
        if to_ms - from_ms > MAX_PERIOD_DAYS * 86_400_000 {
            return Err(PeriodError {
                field: "to",
                message: format!("the period may cover at most {MAX_PERIOD_DAYS} days"),
            });
        }
        let tomorrow = today_ms.div_euclid(86_400_000) * 86_400_000 + 86_400_000;
        if to_ms > tomorrow {
            return Err(PeriodError {
                field: "to",
                message: "must not be after tomorrow: a report covers the past".to_owned(),
            });
        }
        Ok(ReportPeriod {
            from: from.to_owned(),
            to: to.to_owned(),
            from_ms,
            to_ms,
        })
    }
}

impl Report {
    /// A small, complete report (documentation and tests).
    pub fn example() -> Report {
        let stat = |metric: &str, key: &str, value: f64| Statistic {
            metric: metric.to_owned(),
            group_by: "none".to_owned(),
            mechanism: "discrete_laplace".to_owned(),
            epsilon_nanos: 100_000_000,
            delta_femtos: 0,
            parts: vec![StatisticPart {
                name: "count".to_owned(),
                sensitivity: 5,
                scale: 50.0,
                epsilon: 0.1,
                delta: 0.0,
            }],
            groups: vec![StatisticGroup {
                key: key.to_owned(),
                bin: None,
                value: Some(value),
                accuracy_95: Some(149.79),
            }],
        };
        Report {
            format: REPORT_FORMAT.to_owned(),
            id: "rep_example".to_owned(),
            tenant_id: "t_example".to_owned(),
            created_at: "2026-12-01T00:00:00Z".to_owned(),
            period: ReportPeriod {
                from: "2026-11-01".to_owned(),
                to: "2026-12-01".to_owned(),
                from_ms: 1_793_491_200_000,
                to_ms: 1_796_083_200_000,
            },
            statistics: vec![stat("count", "all", 1234.0)],
            alignment: vec![stat("alignment_mean", "all", 0.873)],
            ethics: vec![stat("violation_count", "HONEST", 12.0)],
            methodology: "Differentially private counts and means.".to_owned(),
            limitations: "Noisy figures; see accuracy_95.".to_owned(),
            privacy: PrivacySection {
                mechanisms: vec!["discrete_laplace".to_owned()],
                unit: "one person (user_id) with all their items".to_owned(),
                contribution_cap: 5,
                epsilon_nanos: 300_000_000,
                delta_femtos: 0,
                ledger_entry_id: "pl_example".to_owned(),
            },
        }
    }
}

/// The signature object of a report file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSignature {
    /// Always `ed25519`.
    pub algorithm: String,
    /// First 4 bytes of SHA-256 of the public key, hex (the audit checkpoints' key id).
    pub key_id: String,
    /// The 32-byte public key, base64.
    pub public_key: String,
    /// The 64-byte signature, base64.
    pub value: String,
}

/// A report file: the report and its signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport {
    /// The report.
    pub report: Report,
    /// Its signature.
    pub signature: ReportSignature,
}

/// Why a report cannot be made or trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not a report file: not UTF-8 JSON, a missing or unknown field, an unknown algorithm, a
    /// key or signature that is not valid base64 of the right length, a key id that does not
    /// match the key, or over [`MAX_REPORT_BYTES`].
    #[error("malformed report: {0}")]
    Malformed(String),
    /// Valid JSON, but not in canonical form (so not as signed).
    #[error("the report is not in canonical form (it was altered or re-encoded)")]
    NotCanonical,
    /// The signature does not verify under the report's key: the report or the signature was
    /// altered.
    #[error("the signature does not verify: the report or its signature was altered")]
    BadSignature,
    /// Signed by another key than the expected one.
    #[error("signed by key {found}, not by the expected key {expected}")]
    WrongKey {
        /// The expected key's id.
        expected: String,
        /// The report's key id.
        found: String,
    },
}

/// The key id of an Ed25519 public key: the first 4 bytes of SHA-256 of its 32 bytes, hex
/// (the same id as the audit checkpoints' signatures).
pub fn key_id(key: &VerifyingKey) -> String {
    Sha256::digest(key.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The canonical JSON encoding of `value`: keys sorted by their bytes, no whitespace, minimal
/// string escapes, `serde_json`'s number form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            // Scalars: serde_json writes the minimal escapes and the shortest round-tripping
            // number form.
            out.push_str(&value.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn to_value<T: Serialize>(item: &T) -> Result<Value, ReportError> {
    serde_json::to_value(item).map_err(|e| ReportError::Malformed(e.to_string()))
}

/// The message signed for `report`: [`SIGNING_DOMAIN`] and the report's canonical bytes.
fn message(report: &Value) -> Vec<u8> {
    let mut message = SIGNING_DOMAIN.to_vec();
    message.extend_from_slice(canonical_json(report).as_bytes());
    message
}

/// Signs `report` with `key`; the report file's text, canonical, with one trailing newline.
/// Refuses a report whose numbers are not finite or whose file would exceed
/// [`MAX_REPORT_BYTES`].
pub fn sign(report: &Report, key: &SigningKey) -> Result<String, ReportError> {
    let body = to_value(report)?;
    let signature = key.sign(&message(&body));
    let public = key.verifying_key();
    let file = SignedReport {
        report: report.clone(),
        signature: ReportSignature {
            algorithm: ALGORITHM.to_owned(),
            key_id: key_id(&public),
            public_key: B64.encode(public.as_bytes()),
            value: B64.encode(signature.to_bytes()),
        },
    };
    let mut text = canonical_json(&to_value(&file)?);
    text.push('\n');
    if text.len() > MAX_REPORT_BYTES {
        return Err(ReportError::Malformed(format!(
            "the report is over {MAX_REPORT_BYTES} bytes"
        )));
    }
    Ok(text)
}

/// A report whose signature verified, and the key that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedReport {
    /// The report.
    pub report: Report,
    /// The key id (hex) of the key that signed it.
    pub key_id: String,
    /// The key that signed it.
    pub public_key: VerifyingKey,
}

/// Verifies a report file: size, JSON, canonical form, structure, then the Ed25519 signature
/// (strict verification) under the file's key, which must be `expected` when one is given.
/// Without `expected` the check proves only that whoever holds the file's key signed it: compare
/// the key id with the server's (`GET /api/v1/audit/public-key`).
pub fn verify(
    bytes: &[u8],
    expected: Option<&VerifyingKey>,
) -> Result<VerifiedReport, ReportError> {
    if bytes.len() > MAX_REPORT_BYTES + 1 {
        return Err(ReportError::Malformed(format!(
            "the file is over {MAX_REPORT_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ReportError::Malformed(format!("not UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| ReportError::Malformed(format!("not JSON: {e}")))?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    if canonical_json(&value) != body {
        return Err(ReportError::NotCanonical);
    }
    let file: SignedReport =
        serde_json::from_value(value.clone()).map_err(|e| ReportError::Malformed(e.to_string()))?;
    let sig = &file.signature;
    if sig.algorithm != ALGORITHM {
        return Err(ReportError::Malformed(format!(
            "signature.algorithm: {:?} is not {ALGORITHM:?}",
            sig.algorithm
        )));
    }
    let key_bytes: [u8; 32] = B64
        .decode(&sig.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            ReportError::Malformed("signature.public_key: not base64 of 32 bytes".to_owned())
        })?;
    let public_key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| {
        ReportError::Malformed("signature.public_key: not an Ed25519 public key".to_owned())
    })?;
    let found = key_id(&public_key);
    if sig.key_id != found {
        return Err(ReportError::Malformed(format!(
            "signature.key_id: {:?} is not the public key's id {found:?}",
            sig.key_id
        )));
    }
    if let Some(expected) = expected {
        if expected != &public_key {
            return Err(ReportError::WrongKey {
                expected: key_id(expected),
                found,
            });
        }
    }
    let signature_bytes: [u8; 64] = B64
        .decode(&sig.value)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            ReportError::Malformed("signature.value: not base64 of 64 bytes".to_owned())
        })?;
    let signature = Signature::from_bytes(&signature_bytes);
    let report_value = value
        .get("report")
        .ok_or_else(|| ReportError::Malformed("no report".to_owned()))?;
    public_key
        .verify_strict(&message(report_value), &signature)
        .map_err(|_| ReportError::BadSignature)?;
    Ok(VerifiedReport {
        report: file.report,
        key_id: found,
        public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_checked_naming_the_field() {
        let today = 1_796_083_200_000; // 2026-12-01
        let p = ReportPeriod::parse("2026-11-01", "2026-12-01", today).unwrap();
        assert_eq!((p.from_ms, p.to_ms), (1_793_491_200_000, 1_796_083_200_000));
        for (from, to, field) in [
            ("2026-11-31", "2026-12-01", "from"),
            ("2026-11-1", "2026-12-01", "from"),
            ("2026-11-01", "yesterday", "to"),
            ("2026-11-01", "2026-11-01", "to"),
            ("2025-01-01", "2026-12-01", "to"),
            ("2026-11-01", "2026-12-03", "to"),
        ] {
            assert_eq!(
                ReportPeriod::parse(from, to, today).unwrap_err().field,
                field,
                "{from}..{to}"
            );
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_report_verifies_with_and_without_the_expected_key() {
        let k = key(1);
        let file = sign(&Report::example(), &k).unwrap();
        assert!(file.ends_with("}\n"));
        let v = verify(file.as_bytes(), Some(&k.verifying_key())).unwrap();
        assert_eq!(v.report, Report::example());
        assert_eq!(v.key_id, key_id(&k.verifying_key()));
        let v = verify(file.trim_end().as_bytes(), None).unwrap();
        assert_eq!(v.public_key, k.verifying_key());
    }

    #[test]
    fn another_key_is_a_wrong_key() {
        let file = sign(&Report::example(), &key(1)).unwrap();
        let e = verify(file.as_bytes(), Some(&key(2).verifying_key())).unwrap_err();
        assert!(matches!(e, ReportError::WrongKey { .. }), "{e}");
    }

    #[test]
    fn a_re_encoded_report_is_not_canonical() {
        let file = sign(&Report::example(), &key(1)).unwrap();
        let value: Value = serde_json::from_str(&file).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        assert_eq!(
            verify(pretty.as_bytes(), None).unwrap_err(),
            ReportError::NotCanonical
        );
        let escaped = file.replacen("rep_example", "rep_\\u0065xample", 1);
        assert_eq!(
            verify(escaped.as_bytes(), None).unwrap_err(),
            ReportError::NotCanonical
        );
        assert_eq!(
            verify(format!("{file}\n").as_bytes(), None).unwrap_err(),
            ReportError::NotCanonical
        );
    }

    #[test]
    fn a_changed_report_re_encoded_canonically_has_a_bad_signature() {
        let file = sign(&Report::example(), &key(1)).unwrap();
        let mut value: Value = serde_json::from_str(&file).unwrap();
        value["report"]["statistics"][0]["groups"][0]["value"] = serde_json::json!(1235.0);
        let forged = canonical_json(&value);
        assert_eq!(
            verify(forged.as_bytes(), None).unwrap_err(),
            ReportError::BadSignature
        );
    }

    #[test]
    fn a_forged_signature_object_is_refused() {
        let file = sign(&Report::example(), &key(1)).unwrap();
        let mut value: Value = serde_json::from_str(&file).unwrap();
        // Another key's public key and id, the first key's signature.
        let other = key(2).verifying_key();
        value["signature"]["public_key"] = Value::String(B64.encode(other.as_bytes()));
        value["signature"]["key_id"] = Value::String(key_id(&other));
        assert_eq!(
            verify(canonical_json(&value).as_bytes(), None).unwrap_err(),
            ReportError::BadSignature
        );
        value["signature"]["algorithm"] = Value::String("rsa".to_owned());
        assert!(matches!(
            verify(canonical_json(&value).as_bytes(), None).unwrap_err(),
            ReportError::Malformed(_)
        ));
    }

    #[test]
    fn malformed_files_are_named() {
        for bad in [&b"\xff\xfe"[..], b"not json", b"{}", b"[]"] {
            assert!(
                matches!(verify(bad, None), Err(ReportError::Malformed(_))),
                "{bad:?}"
            );
        }
        let huge = vec![b' '; MAX_REPORT_BYTES + 2];
        assert!(matches!(
            verify(&huge, None),
            Err(ReportError::Malformed(_))
        ));
    }

    #[test]
    fn canonical_json_sorts_keys_by_bytes_and_drops_whitespace() {
        let value: Value =
            serde_json::from_str(r#"{ "b": [1, 2.5, "x\u0041"], "a": {"é": null, "Z": true} }"#)
                .unwrap();
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"Z":true,"é":null},"b":[1,2.5,"xA"]}"#
        );
    }

    /// Acceptance: flipping any single byte of a signed report fails verification (every
    /// position, several flips each).
    #[test]
    fn flipping_any_byte_of_a_signed_report_fails_verification() {
        let k = key(9);
        let mut report = Report::example();
        report.statistics.push(Statistic {
            metric: "rating_mean".to_owned(),
            group_by: "type".to_owned(),
            mechanism: "discrete_gaussian".to_owned(),
            epsilon_nanos: 50_000_000,
            delta_femtos: 1_000_000_000,
            parts: vec![StatisticPart {
                name: "sum".to_owned(),
                sensitivity: 10,
                scale: 12.5,
                epsilon: 0.025,
                delta: 5e-7,
            }],
            groups: vec![
                StatisticGroup {
                    key: "bug".to_owned(),
                    bin: Some("3".to_owned()),
                    value: Some(-0.25),
                    accuracy_95: Some(1e-3),
                },
                StatisticGroup {
                    key: "praise".to_owned(),
                    bin: None,
                    value: None,
                    accuracy_95: None,
                },
            ],
        });
        let file = sign(&report, &k).unwrap().into_bytes();
        assert!(verify(&file, Some(&k.verifying_key())).is_ok());
        let mut failures = 0;
        for position in 0..file.len() {
            for flip in [0x01u8, 0x02, 0x20, 0x80] {
                let mut altered = file.clone();
                altered[position] ^= flip;
                assert!(
                    verify(&altered, None).is_err(),
                    "flipping {flip:#04x} at byte {position} still verifies"
                );
                failures += 1;
            }
        }
        assert_eq!(failures, file.len() * 4);
    }
}
