//! Quality of a [`Detector`] against a labelled corpus: precision and recall per entity type,
//! counting a finding as correct only when its type and character span match a label exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{char_span, Detector};

/// One labelled text, as a line of the corpus (`{"text": …, "entities": [{"type", "start",
/// "end"}]}`, character offsets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledText {
    /// The text.
    pub text: String,
    /// The personal data in it.
    pub entities: Vec<LabelledSpan>,
}

/// A labelled entity: Presidio type name and character span.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LabelledSpan {
    /// Entity type name (`PHONE_NUMBER`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Start, in characters.
    pub start: usize,
    /// End (exclusive), in characters.
    pub end: usize,
}

/// Counts of one entity type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Findings matching a label exactly.
    pub true_positives: usize,
    /// Findings matching no label.
    pub false_positives: usize,
    /// Labels matched by no finding.
    pub false_negatives: usize,
}

impl Counts {
    /// TP / (TP + FP); 1 when nothing was reported.
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// TP / (TP + FN); 1 when there was nothing to find.
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

/// A mismatch between findings and labels, for diagnosis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Index of the text in the corpus.
    pub index: usize,
    /// The finding (false positive) or label (false negative).
    pub span: LabelledSpan,
    /// Whether it was reported without a label (true) or labelled and not reported (false).
    pub false_positive: bool,
}

/// Per-type counts over a corpus, and the mismatches.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Counts per entity type name.
    pub per_type: BTreeMap<String, Counts>,
    /// Every false positive and false negative.
    pub mismatches: Vec<Mismatch>,
}

/// Runs `detector` over `corpus` and compares with the labels (exact type and span).
pub fn evaluate(detector: &Detector, corpus: &[LabelledText]) -> Evaluation {
    let mut evaluation = Evaluation::default();
    let mut findings = Vec::new();
    for (index, item) in corpus.iter().enumerate() {
        detector.detect_into(&item.text, &mut findings);
        let mut found: Vec<LabelledSpan> = findings
            .iter()
            .map(|finding| {
                let span = char_span(&item.text, &finding.span);
                LabelledSpan {
                    entity_type: finding.entity.as_str().to_owned(),
                    start: span.start,
                    end: span.end,
                }
            })
            .collect();
        found.sort();
        let mut labels = item.entities.clone();
        labels.sort();
        for span in &found {
            let counts = evaluation
                .per_type
                .entry(span.entity_type.clone())
                .or_default();
            if labels.binary_search(span).is_ok() {
                counts.true_positives += 1;
            } else {
                counts.false_positives += 1;
                evaluation.mismatches.push(Mismatch {
                    index,
                    span: span.clone(),
                    false_positive: true,
                });
            }
        }
        for span in labels {
            let counts = evaluation
                .per_type
                .entry(span.entity_type.clone())
                .or_default();
            if found.binary_search(&span).is_err() {
                counts.false_negatives += 1;
                evaluation.mismatches.push(Mismatch {
                    index,
                    span,
                    false_positive: false,
                });
            }
        }
    }
    evaluation
}
