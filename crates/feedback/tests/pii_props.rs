//! Properties of detection and redaction over generated texts: spans are sound, redaction
//! leaves no detected value behind and is idempotent, and nothing panics on any input.

use std::net::{Ipv4Addr, Ipv6Addr};

use feedback::pii::{redact, Detector, EntityType, Finding, Redaction};
use proptest::prelude::*;

fn luhn_check_digit(body: &str) -> u32 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

fn iban_check_digits(country: &str, bban: &str) -> u32 {
    let rearranged = format!("{bban}{country}00");
    let mut rem = 0u32;
    for c in rearranged.chars() {
        rem = match c {
            '0'..='9' => (rem * 10 + c.to_digit(10).unwrap()) % 97,
            _ => (rem * 100 + (c as u32 - 'A' as u32 + 10)) % 97,
        };
    }
    98 - rem
}

fn group(digits: &str, sizes: &[usize], sep: &str) -> String {
    let mut out = Vec::new();
    let mut at = 0;
    for &size in sizes {
        out.push(&digits[at..at + size]);
        at += size;
    }
    out.join(sep)
}

fn email() -> impl Strategy<Value = (EntityType, String)> {
    (
        "[a-z]{1,8}(\\.[a-z]{1,6})?",
        "[a-z]{2,10}",
        prop::sample::select(vec!["com", "org", "de", "co.uk"]),
    )
        .prop_map(|(local, domain, tld)| {
            (EntityType::EmailAddress, format!("{local}@{domain}.{tld}"))
        })
}

fn card() -> impl Strategy<Value = (EntityType, String)> {
    ("[0-9]{14}", prop::sample::select(vec!["", " ", "-"])).prop_map(|(rest, sep)| {
        let body = format!("4{rest}");
        let digits = format!("{body}{}", luhn_check_digit(&body));
        (EntityType::CreditCard, group(&digits, &[4, 4, 4, 4], sep))
    })
}

fn iban() -> impl Strategy<Value = (EntityType, String)> {
    ("[0-9]{18}", any::<bool>()).prop_map(|(bban, grouped)| {
        let check = iban_check_digits("DE", &bban);
        let compact = format!("DE{check:02}{bban}");
        let text = if grouped {
            group(&compact, &[4, 4, 4, 4, 4, 2], " ")
        } else {
            compact
        };
        (EntityType::IbanCode, text)
    })
}

fn ip() -> impl Strategy<Value = (EntityType, String)> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| (EntityType::IpAddress, Ipv4Addr::from(o).to_string())),
        any::<[u16; 8]>()
            .prop_filter("has a decimal digit", |s| Ipv6Addr::from(*s)
                .to_string()
                .bytes()
                .any(|b| b.is_ascii_digit()))
            .prop_map(|s| (EntityType::IpAddress, Ipv6Addr::from(s).to_string())),
    ]
}

fn ssn() -> impl Strategy<Value = (EntityType, String)> {
    (1u32..900, 1u32..100, 1u32..10_000)
        .prop_filter("area 666", |(a, _, _)| *a != 666)
        .prop_map(|(a, g, s)| (EntityType::UsSsn, format!("{a:03}-{g:02}-{s:04}")))
}

fn nino() -> impl Strategy<Value = (EntityType, String)> {
    (
        prop::sample::select(vec!["AB", "CE", "JG", "PR", "WX", "YZ"]),
        0u32..1_000_000,
        prop::sample::select(vec!['A', 'B', 'C', 'D']),
        any::<bool>(),
    )
        .prop_map(|(prefix, n, suffix, spaced)| {
            let d = format!("{n:06}");
            let text = if spaced {
                format!("{prefix} {} {} {} {suffix}", &d[..2], &d[2..4], &d[4..])
            } else {
                format!("{prefix}{d}{suffix}")
            };
            (EntityType::UkNino, text)
        })
}

fn phone() -> impl Strategy<Value = (EntityType, String)> {
    prop_oneof![
        "[2-9][02-9][0-9]".prop_flat_map(|area| ("[2-9][0-9]{2}", "[0-9]{4}")
            .prop_map(move |(x, s)| (EntityType::PhoneNumber, format!("+1 ({area}) {x}-{s}")))),
        "[0-9]{4} [0-9]{4}".prop_map(|n| (EntityType::PhoneNumber, format!("+44 20 {n}"))),
        "[0-9]{2} [0-9]{2} [0-9]{2} [0-9]{2}"
            .prop_map(|n| (EntityType::PhoneNumber, format!("06 {n}"))),
        "[0-9]{7,8}".prop_map(|n| (EntityType::PhoneNumber, format!("030 {n}"))),
    ]
}

fn entity() -> impl Strategy<Value = (EntityType, String)> {
    prop_oneof![email(), card(), iban(), ip(), ssn(), nino(), phone()]
}

/// Filler of arbitrary text (any Unicode, digits and separators included).
fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        "[0-9 .:/()+@a-f-]{0,12}",
        "[a-zA-Z,;!?]{0,10}"
    ]
}

/// Filler of plain words, which can't extend or merge with an entity (nor read as a version
/// word before an address).
fn words() -> impl Strategy<Value = String> {
    let vocabulary = vec![
        "the", "app", "crashed", "again", "Please", "refund", "my", "parcel", "thanks", "great",
        "support", "slow", "délai", "très", "bien", "配送", "is", "at", "and",
    ];
    prop::collection::vec(prop::sample::select(vocabulary), 0..5).prop_map(|w| w.join(" "))
}

fn check_spans(text: &str, findings: &[Finding]) {
    let mut previous_end = 0;
    for f in findings {
        assert!(
            f.span.start < f.span.end && f.span.end <= text.len(),
            "{f:?}"
        );
        assert!(
            text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end),
            "{f:?}"
        );
        assert!(
            f.span.start >= previous_end,
            "overlap or unsorted: {findings:?}"
        );
        assert!((0.0..=1.0).contains(&f.confidence));
        previous_end = f.span.end;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn redaction_removes_every_detected_value(parts in prop::collection::vec((filler(), entity()), 1..6), tail in filler()) {
        let mut text = String::new();
        for (fill, (_, value)) in &parts {
            text.push_str(fill);
            text.push(' ');
            text.push_str(value);
            text.push(' ');
        }
        text.push_str(&tail);
        let detector = Detector::default();
        let findings = detector.detect(&text);
        check_spans(&text, &findings);
        let tagged = redact(&text, &findings, &Redaction::Tag);
        let keyed = redact(&text, &findings, &Redaction::Pseudonym { key: b"k".to_vec() });
        for f in &findings {
            let value = &text[f.span.clone()];
            prop_assert!(!tagged.contains(value), "{value:?} left in {tagged:?}");
            prop_assert!(!keyed.contains(value), "{value:?} left in {keyed:?}");
        }
        // Idempotent on tags: redacting again never touches a tag. (It may find a number
        // that only stood out once a neighbouring value was cut from the run of digits it
        // was glued to, e.g. `06 00 00 00 00 00 0.0.0.0`.)
        for f in detector.detect(&tagged) {
            let value = &tagged[f.span];
            prop_assert!(!value.contains('<') && !value.contains('>'), "{value:?} in {tagged:?}");
        }
    }

    #[test]
    fn generated_entities_are_found_exactly(parts in prop::collection::vec((words(), entity()), 1..5), tail in words()) {
        let mut text = String::new();
        let mut expected = Vec::new();
        for (fill, (entity, value)) in &parts {
            text.push_str(fill);
            text.push(' ');
            expected.push((entity.clone(), text.len()..text.len() + value.len()));
            text.push_str(value);
            text.push_str(", ");
        }
        text.push_str(&tail);
        let found: Vec<_> = Detector::default()
            .detect(&text)
            .into_iter()
            .map(|f| (f.entity, f.span))
            .collect();
        prop_assert_eq!(found, expected, "in {:?}", text);
        // With the values apart from each other, redaction is idempotent.
        let detector = Detector::default();
        let tagged = redact(&text, &detector.detect(&text), &Redaction::Tag);
        prop_assert!(detector.detect(&tagged).is_empty(), "in {:?}", tagged);
    }

    #[test]
    fn no_panic_on_any_input(text in any::<String>(), dense in "[0-9 .:/()+@#a-fA-FA-Z\u{e9}\u{4e2d}-]{0,80}") {
        let detector = Detector::default();
        for t in [&text, &dense] {
            let findings = detector.detect(t);
            check_spans(t, &findings);
            let _ = redact(t, &findings, &Redaction::Tag);
            let _ = feedback::pii::presidio_results(t, &findings);
        }
    }

    #[test]
    fn redact_survives_arbitrary_findings(text in "\\PC{0,40}", spans in prop::collection::vec((0usize..60, 0usize..60), 0..6)) {
        let findings: Vec<Finding> = spans
            .into_iter()
            .map(|(a, b)| Finding { entity: EntityType::EmailAddress, span: a..b, confidence: 1.0 })
            .collect();
        let _ = redact(&text, &findings, &Redaction::Tag);
        let _ = feedback::pii::api_findings(&text, &findings);
    }
}
