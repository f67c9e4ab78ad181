//! Table tests of the built-in recognisers, tenant settings, overlap resolution and the JSON
//! views.

use feedback::pii::{
    api_findings, presidio_results, redact, DenyEntry, Detector, EntityType, PatternConfig,
    PiiConfig, PiiConfigError, Redaction,
};

/// The (entity name, text) of every finding in `text`.
fn found(text: &str) -> Vec<(String, String)> {
    Detector::default()
        .detect(text)
        .into_iter()
        .map(|f| (f.entity.to_string(), text[f.span].to_owned()))
        .collect()
}

fn assert_finds(entity: &str, cases: &[(&str, &str)]) {
    for (text, expected) in cases {
        assert_eq!(
            found(text),
            vec![(entity.to_owned(), (*expected).to_owned())],
            "in {text:?}"
        );
    }
}

fn assert_nothing(cases: &[&str]) {
    for text in cases {
        assert_eq!(found(text), vec![], "in {text:?}");
    }
}

#[test]
fn emails() {
    assert_finds(
        "EMAIL_ADDRESS",
        &[
            (
                "write to jane.doe+billing@example.co.uk.",
                "jane.doe+billing@example.co.uk",
            ),
            (
                "<J_Smith-99@mail.example.org>",
                "J_Smith-99@mail.example.org",
            ),
            (
                "mailto:ops@xn--bcher-kva.example",
                "ops@xn--bcher-kva.example",
            ),
            ("contact: josé.garcía@correo.es!", "josé.garcía@correo.es"),
        ],
    );
    assert_nothing(&[
        "user@localhost",
        "a@b.c",
        "@handle",
        "name@.com",
        "x@y..com",
        "1@2.3",
    ]);
}

#[test]
fn phones() {
    assert_finds(
        "PHONE_NUMBER",
        &[
            ("call +1 (415) 555-0132 now", "+1 (415) 555-0132"),
            ("US office (212) 555-0188.", "(212) 555-0188"),
            ("us at 415.555.0199", "415.555.0199"),
            ("toll free 1-800-555-0199", "1-800-555-0199"),
            ("London +44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
            ("mobile 07700 900123", "07700 900123"),
            ("Berlin 030 12345678", "030 12345678"),
            ("Handy 0171/1234567", "0171/1234567"),
            ("+49 151 23456789", "+49 151 23456789"),
            ("Paris 01 42 68 53 00", "01 42 68 53 00"),
            ("portable 06.12.34.56.78", "06.12.34.56.78"),
            ("+33 6 12 34 56 78", "+33 6 12 34 56 78"),
            ("India +91 98765 43210", "+91 98765 43210"),
            ("ring 98765 43210", "98765 43210"),
            ("Sydney (02) 9876 5432", "(02) 9876 5432"),
            ("0412 345 678", "0412 345 678"),
            ("São Paulo (11) 91234-5678", "(11) 91234-5678"),
            ("+55 11 91234-5678", "+55 11 91234-5678"),
            ("Tokyo 03-1234-5678", "03-1234-5678"),
            ("携帯 090-1234-5678", "090-1234-5678"),
            ("+81 90 1234 5678", "+81 90 1234 5678"),
            ("E.164 +4915123456789", "+4915123456789"),
            ("call me on 07700900123", "07700900123"),
            ("0044 20 7946 0958", "0044 20 7946 0958"),
        ],
    );
    assert_nothing(&[
        "on 2024-03-15 at 14:30",
        "on 15/03/2024 or 15.03.2024",
        "order ORD-2024-558812 and #123456789",
        "tracking 1Z999AA10123456784",
        "tracking 9400 1000 0000 0000 0000 00",
        "version v2.14.3 and build 10.0.19045.3803",
        "paid $1,234.56 for 3 x 250 ml",
        "invoice 2024-000123",
        "order number 0123456789",
        "+1 555 0100",
        "4111 1111 1111 1112 is my card",
        "call +99 123 456",
    ]);
}

#[test]
fn cards() {
    assert_finds(
        "CREDIT_CARD",
        &[
            ("visa 4111 1111 1111 1111", "4111 1111 1111 1111"),
            ("4111-1111-1111-1111", "4111-1111-1111-1111"),
            ("mc 5555555555554444 ok", "5555555555554444"),
            ("2-series 2221 0000 0000 0009", "2221 0000 0000 0009"),
            ("amex 3782 822463 10005", "3782 822463 10005"),
            ("discover 6011 1111 1111 1117", "6011 1111 1111 1117"),
            ("diners 3056 930902 5904", "3056 930902 5904"),
            ("jcb 3530111333300000", "3530111333300000"),
            ("unionpay 6200 0000 0000 0005", "6200 0000 0000 0005"),
            ("visa13 4222222222222", "4222222222222"),
        ],
    );
    assert_nothing(&[
        "4111 1111 1111 1112",
        "1234 5678 9012 3456",
        "41111111111111111111111",
        "ref 4111111111111111-22",
    ]);
}

#[test]
fn ibans() {
    assert_finds(
        "IBAN_CODE",
        &[
            (
                "IBAN DE89 3704 0044 0532 0130 00.",
                "DE89 3704 0044 0532 0130 00",
            ),
            ("GB82WEST12345698765432", "GB82WEST12345698765432"),
            (
                "pay to FR14 2004 1010 0505 0001 3M02 606",
                "FR14 2004 1010 0505 0001 3M02 606",
            ),
            ("NO9386011117947", "NO9386011117947"),
        ],
    );
    assert_nothing(&[
        "DE89 3704 0044 0532 0130 01",
        "GB82WEST1234569876543",
        "XX89370400440532013000",
    ]);
}

#[test]
fn ip_addresses() {
    assert_finds(
        "IP_ADDRESS",
        &[
            ("from 192.168.1.20.", "192.168.1.20"),
            ("at 10.0.0.1:8080", "10.0.0.1"),
            ("[2001:db8::ff00:42:8329]:443", "2001:db8::ff00:42:8329"),
            (
                "full 2001:0db8:0000:0000:0000:ff00:0042:8329 ok",
                "2001:0db8:0000:0000:0000:ff00:0042:8329",
            ),
            ("mapped ::ffff:192.0.2.128", "::ffff:192.0.2.128"),
            ("loopback ::1.", "::1"),
            (
                "link fe80::1ff:fe23:4567:890a: down",
                "fe80::1ff:fe23:4567:890a",
            ),
        ],
    );
    assert_nothing(&[
        "version 1.2.3.4",
        "1.2.3.4.5",
        "256.1.1.1",
        "10.0.19045.3803",
        "at 12:30:45",
        "mac 00:1A:2B:3C:4D:5E",
        "Face::Add",
    ]);
}

#[test]
fn ssn_and_nino() {
    assert_finds(
        "US_SSN",
        &[
            ("SSN 078-05-1120", "078-05-1120"),
            ("my ssn is 078 05 1120", "078 05 1120"),
            ("social security 078051120", "078051120"),
        ],
    );
    assert_nothing(&[
        "000-12-3456",
        "666-12-3456",
        "912-34-5678",
        "123-00-4567",
        "123-45-0000",
        "078 05 1120",
        "078051120",
    ]);
    assert_finds(
        "UK_NINO",
        &[
            ("NI AB123456C", "AB123456C"),
            ("nino: AB 12 34 56 C", "AB 12 34 56 C"),
            ("ce 123456 a", "ce 123456 a"),
        ],
    );
    assert_nothing(&[
        "QQ123456C",
        "AO123456C",
        "GB123456A",
        "AB123456E",
        "XAB123456C",
    ]);
}

#[test]
fn several_entities_sorted_and_non_overlapping() {
    let text = "I'm jo@example.com, +44 20 7946 0958, card 4111111111111111, IP 8.8.8.8";
    let names: Vec<String> = found(text).into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        names,
        ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS"]
    );
}

#[test]
fn tenant_patterns_allow_and_deny_lists() {
    let config = PiiConfig {
        patterns: vec![PatternConfig {
            name: "EMPLOYEE_ID".into(),
            regex: r"\bEMP-\d{5}\b".into(),
            confidence: 0.45,
            context: vec!["employee".into()],
        }],
        allow_list: vec!["support@acme.example".into()],
        deny_list: vec![
            DenyEntry::Value("Falcon".into()),
            DenyEntry::Named {
                value: "Dr Who".into(),
                entity: Some("PERSON".into()),
            },
        ],
        ..PiiConfig::default()
    };
    let detector = Detector::new(&config).unwrap();
    let text = "employee EMP-12345 wrote support@acme.example about Falcon, not Falconry; EMP-54321; Dr Who";
    let got: Vec<(String, String, f32)> = detector
        .detect(text)
        .into_iter()
        .map(|f| (f.entity.to_string(), text[f.span].to_owned(), f.confidence))
        .collect();
    assert_eq!(
        got,
        vec![
            // 0.45 + the context boost clears the 0.5 minimum; EMP-54321 has no context word.
            (
                "EMPLOYEE_ID".into(),
                "EMP-12345".into(),
                0.45 + feedback::pii::CONTEXT_BOOST
            ),
            ("DENY_LIST".into(), "Falcon".into(), 1.0),
            ("PERSON".into(), "Dr Who".into(), 1.0),
        ]
    );
}

#[test]
fn entities_can_be_disabled() {
    let config = PiiConfig {
        entities: vec![EntityType::EmailAddress],
        ..PiiConfig::default()
    };
    let detector = Detector::new(&config).unwrap();
    let found = detector.detect("a@example.com 4111111111111111");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].entity, EntityType::EmailAddress);
}

#[test]
fn bad_configs_name_the_field() {
    let pattern = |name: &str, regex: &str, confidence: f32| PiiConfig {
        patterns: vec![PatternConfig {
            name: name.into(),
            regex: regex.into(),
            confidence,
            context: vec![],
        }],
        ..PiiConfig::default()
    };
    assert!(
        matches!(Detector::new(&pattern("X", "(", 0.5)), Err(PiiConfigError::InvalidRegex { field, .. }) if field == "patterns[0].regex")
    );
    assert!(
        matches!(Detector::new(&pattern("order id", "x", 0.5)), Err(PiiConfigError::InvalidName { field, .. }) if field == "patterns[0].name")
    );
    assert!(
        matches!(Detector::new(&pattern("X", "x", 1.5)), Err(PiiConfigError::OutOfRange { field, .. }) if field == "patterns[0].confidence")
    );
    assert!(
        matches!(Detector::new(&pattern("X", "x*", 0.5)), Err(PiiConfigError::EmptyMatch { field }) if field == "patterns[0].regex")
    );
    let unknown: PiiConfig = toml::from_str(r#"entities = ["EMAIL"]"#).unwrap();
    assert!(
        matches!(Detector::new(&unknown), Err(PiiConfigError::UnknownEntity { field, .. }) if field == "entities[0]")
    );
    let bad_deny = PiiConfig {
        deny_list: vec![DenyEntry::Value(String::new())],
        ..PiiConfig::default()
    };
    assert!(
        matches!(Detector::new(&bad_deny), Err(PiiConfigError::Empty { field }) if field == "deny_list[0]")
    );
    let bad_min = PiiConfig {
        min_confidence: f32::NAN,
        ..PiiConfig::default()
    };
    assert!(
        matches!(Detector::new(&bad_min), Err(PiiConfigError::OutOfRange { field, .. }) if field == "min_confidence")
    );
    assert!(toml::from_str::<PiiConfig>("allowlist = []").is_err());
}

#[test]
fn json_views_use_char_offsets() {
    let text = "Grüße — ruf 030 12345678 an";
    let findings = Detector::default().detect(text);
    let presidio = serde_json::to_value(presidio_results(text, &findings)).unwrap();
    assert_eq!(
        presidio,
        serde_json::json!([{"entity_type": "PHONE_NUMBER", "start": 12, "end": 24, "score": 0.75f32}])
    );
    let api = serde_json::to_value(api_findings(text, &findings)).unwrap();
    assert_eq!(
        api,
        serde_json::json!([{"type": "PHONE_NUMBER", "start": 12, "end": 24, "confidence": 0.75f32}])
    );
    let chars: Vec<char> = text.chars().collect();
    assert_eq!(chars[12..24].iter().collect::<String>(), "030 12345678");
}

#[test]
fn pseudonyms_are_consistent_per_key() {
    let text = "card 4111 1111 1111 1111 and again 4111-1111-1111-1111";
    let findings = Detector::default().detect(text);
    let a = redact(
        text,
        &findings,
        &Redaction::Pseudonym {
            key: b"tenant a".to_vec(),
        },
    );
    let b = redact(
        text,
        &findings,
        &Redaction::Pseudonym {
            key: b"tenant b".to_vec(),
        },
    );
    let tags = |s: &str| -> Vec<String> {
        s.split(' ')
            .filter(|w| w.starts_with("<CREDIT_CARD_"))
            .map(str::to_owned)
            .collect()
    };
    let (ta, tb) = (tags(&a), tags(&b));
    assert_eq!(ta.len(), 2);
    assert_eq!(ta[0], ta[1]);
    assert_ne!(ta[0], tb[0]);
    assert_eq!(ta[0].len(), "<CREDIT_CARD_>".len() + 12);
    assert_eq!(
        redact(text, &findings, &Redaction::Tag),
        "card <CREDIT_CARD> and again <CREDIT_CARD>"
    );
    assert!(!format!(
        "{:?}",
        Redaction::Pseudonym {
            key: b"secret".to_vec()
        }
    )
    .contains("secret"));
}
