//! The model-call families, kept in one map and written straight into the exposition.
//!
//! `model_api_*` and `gen_ai_client_*` are the high-cardinality families (tenant × provider ×
//! model × operation, with 7- and 14-bucket histograms): 100 tenants × 20 models is some
//! 170,000 sample lines. Going through prometheus-client's generic encoder (one label-set
//! encode per line) made `/metrics` take over 100 ms; here one map entry holds every series of
//! a (tenant, provider, model), its label values are escaped once when it is created, and the
//! writer appends pre-rendered pieces. One recorded call is one map lookup.
//!
//! Histograms keep each bucket's own count; the cumulative counts and `_count` are summed from
//! them when written, so a scrape racing an observation is still a consistent histogram.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use llm::{CallStatus, ModelCall, Operation, TokenType};

use crate::llm::{GENAI_DURATION_BUCKETS, GENAI_TOKEN_BUCKETS, MODEL_DURATION_BUCKETS};

/// The `le` values of each bucket set as written (as prometheus-client writes floats), then
/// `+Inf`; a test checks they match the bounds.
const MODEL_DURATION_LE: [&str; 8] = ["0.5", "1.0", "2.0", "5.0", "10.0", "30.0", "60.0", "+Inf"];
const GENAI_TOKEN_LE: [&str; 15] = [
    "1.0",
    "4.0",
    "16.0",
    "64.0",
    "256.0",
    "1024.0",
    "4096.0",
    "16384.0",
    "65536.0",
    "262144.0",
    "1048576.0",
    "4194304.0",
    "16777216.0",
    "67108864.0",
    "+Inf",
];
const GENAI_DURATION_LE: [&str; 15] = [
    "0.01", "0.02", "0.04", "0.08", "0.16", "0.32", "0.64", "1.28", "2.56", "5.12", "10.24",
    "20.48", "40.96", "81.92", "+Inf",
];

/// A histogram with fixed bounds: each bucket's own count (the last is `+Inf`) and the sum.
#[derive(Debug)]
struct Hist {
    own: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
}

impl Hist {
    fn new(bounds: &[f64]) -> Hist {
        Hist {
            own: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    fn observe(&self, bounds: &[f64], v: f64) {
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.own[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }
}

/// The series of one operation of one (tenant, provider, model).
#[derive(Debug)]
struct OperationSeries {
    operation: Operation,
    /// Calls by status: success, error.
    calls: [AtomicU64; 2],
    duration: Hist,
    /// Inclusive input, output.
    genai_tokens: [Hist; 2],
    /// By `error_type` ("" for success); few per operation.
    genai_duration: RwLock<Vec<(String, Arc<Hist>)>>,
}

/// Every model-call series of one (tenant, provider, model).
#[derive(Debug)]
struct Entry {
    /// Escaped label values.
    tenant: String,
    provider: String,
    model: String,
    priced_calls: AtomicU64,
    picodollars: AtomicU64,
    unpriced: AtomicU64,
    tokens: [AtomicU64; 5],
    operations: RwLock<Vec<Arc<OperationSeries>>>,
}

/// The store of model-call series.
#[derive(Debug, Default)]
pub(crate) struct ModelCalls {
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    /// Bytes the last full write took, to reserve as much next time.
    last_size: AtomicU64,
}

impl ModelCalls {
    /// Records a call under already guarded and escaped label values.
    pub(crate) fn record(
        &self,
        tenant: &str,
        provider: &str,
        model: &str,
        error_type: &str,
        call: &ModelCall,
    ) {
        let entry = self.entry(tenant, provider, model);
        match call.cost() {
            Some(cost) => {
                entry.priced_calls.fetch_add(1, Ordering::Relaxed);
                let _ = entry
                    .picodollars
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_add(cost.picodollars()))
                    });
            }
            None => {
                entry.unpriced.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (i, t) in TokenType::ALL.iter().enumerate() {
            let n = call.tokens.get(*t);
            if n > 0 {
                let _ = entry.tokens[i].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(n))
                });
            }
        }
        let op = entry.operation(call.operation);
        let status = usize::from(call.status == CallStatus::Error);
        op.calls[status].fetch_add(1, Ordering::Relaxed);
        let seconds = call.duration_us as f64 / 1e6;
        op.duration.observe(&MODEL_DURATION_BUCKETS, seconds);
        // The conventions' token types are inclusive: input counts cached prompt tokens,
        // output counts reasoning tokens.
        let t = &call.tokens;
        let input = t
            .input
            .saturating_add(t.cache_read)
            .saturating_add(t.cache_write);
        let output = t.output.saturating_add(t.reasoning);
        op.genai_tokens[0].observe(&GENAI_TOKEN_BUCKETS, input as f64);
        op.genai_tokens[1].observe(&GENAI_TOKEN_BUCKETS, output as f64);
        op.genai_duration(error_type)
            .observe(&GENAI_DURATION_BUCKETS, seconds);
    }

    fn entry(&self, tenant: &str, provider: &str, model: &str) -> Arc<Entry> {
        // Label values are escaped, so they hold no raw control character to collide on.
        let key = format!("{tenant}\u{1}{provider}\u{1}{model}");
        if let Some(e) = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return e.clone();
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Entry {
                    tenant: tenant.to_owned(),
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                    priced_calls: AtomicU64::new(0),
                    picodollars: AtomicU64::new(0),
                    unpriced: AtomicU64::new(0),
                    tokens: Default::default(),
                    operations: RwLock::new(Vec::new()),
                })
            })
            .clone()
    }

    /// The entries to write, in label order; only `tenant`'s when given (escaped).
    fn snapshot(&self, tenant: Option<&str>) -> Vec<Arc<Entry>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(&String, &Arc<Entry>)> = entries
            .iter()
            .filter(|(_, e)| tenant.is_none_or(|t| e.tenant == t))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.into_iter().map(|(_, e)| e.clone()).collect()
    }

    /// Appends the families in OpenMetrics (`text004 = false`) or the 0.0.4 text; only the
    /// samples of `tenant` (escaped) when given. A family with no sample is left out.
    pub(crate) fn write(&self, out: &mut String, tenant: Option<&str>, text004: bool) {
        let entries = self.snapshot(tenant);
        if entries.is_empty() {
            return;
        }
        if tenant.is_none() {
            let last = self.last_size.load(Ordering::Relaxed);
            out.reserve(usize::try_from(last + last / 8).unwrap_or(0));
        }
        let start = out.len();
        self.write_families(&entries, out, text004);
        if tenant.is_none() {
            self.last_size
                .store((out.len() - start) as u64, Ordering::Relaxed);
        }
    }

    fn write_families(&self, entries: &[Arc<Entry>], out: &mut String, text004: bool) {
        let ops: Vec<Vec<Arc<OperationSeries>>> = entries
            .iter()
            .map(|e| {
                let mut ops = e
                    .operations
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                ops.sort_unstable_by_key(|o| o.operation);
                ops
            })
            .collect();
        let mut w = Writer { out, text004 };

        w.counter_header("model_api_calls", "Total model API calls");
        for (e, ops) in entries.iter().zip(&ops) {
            for op in ops {
                for (i, status) in ["success", "error"].into_iter().enumerate() {
                    let n = op.calls[i].load(Ordering::Relaxed);
                    if n > 0 {
                        w.start("model_api_calls_total");
                        w.seed_labels(e);
                        w.label("operation_type", op.operation.as_str());
                        w.label("status", status);
                        w.end_u64(n);
                    }
                }
            }
        }

        w.header(
            "model_api_duration_seconds",
            "histogram",
            "Model API call duration in seconds",
        );
        for (e, ops) in entries.iter().zip(&ops) {
            for op in ops {
                w.histogram(
                    "model_api_duration_seconds",
                    &MODEL_DURATION_LE,
                    &op.duration,
                    |w| {
                        w.seed_labels(e);
                        w.label("operation_type", op.operation.as_str());
                    },
                );
            }
        }

        if entries
            .iter()
            .any(|e| e.priced_calls.load(Ordering::Relaxed) > 0)
        {
            w.counter_header(
                "model_api_cost_cents",
                "Total model API cost in US cents (exact sum of picodollars, divided when written)",
            );
            for e in entries {
                if e.priced_calls.load(Ordering::Relaxed) > 0 {
                    w.start("model_api_cost_cents_total");
                    w.seed_labels(e);
                    let cents =
                        e.picodollars.load(Ordering::Relaxed) as f64 / llm::Cost::PER_CENT as f64;
                    w.end_f64(cents);
                }
            }
        }

        if entries
            .iter()
            .any(|e| e.tokens.iter().any(|t| t.load(Ordering::Relaxed) > 0))
        {
            w.counter_header(
                "model_api_tokens",
                "Total tokens used, by exclusive token type (input, output, cache_read, cache_write, reasoning)",
            );
            for e in entries {
                for (i, t) in TokenType::ALL.iter().enumerate() {
                    let n = e.tokens[i].load(Ordering::Relaxed);
                    if n > 0 {
                        w.start("model_api_tokens_total");
                        w.seed_labels(e);
                        w.label("token_type", t.as_str());
                        w.end_u64(n);
                    }
                }
            }
        }

        if entries
            .iter()
            .any(|e| e.unpriced.load(Ordering::Relaxed) > 0)
        {
            w.counter_header(
                "model_api_unpriced_calls",
                "Model API calls with no price (stored with a null cost)",
            );
            for e in entries {
                let n = e.unpriced.load(Ordering::Relaxed);
                if n > 0 {
                    w.start("model_api_unpriced_calls_total");
                    w.seed_labels(e);
                    w.end_u64(n);
                }
            }
        }

        w.header(
            "gen_ai_client_token_usage",
            "histogram",
            "Tokens used per GenAI operation (OpenTelemetry gen_ai.client.token.usage; input includes cached tokens, output includes reasoning tokens)",
        );
        for (e, ops) in entries.iter().zip(&ops) {
            for op in ops {
                for (i, token_type) in ["input", "output"].into_iter().enumerate() {
                    w.histogram(
                        "gen_ai_client_token_usage",
                        &GENAI_TOKEN_LE,
                        &op.genai_tokens[i],
                        |w| {
                            w.genai_labels(e, op.operation);
                            w.label("gen_ai_token_type", token_type);
                            w.label("tenant_id", &e.tenant);
                        },
                    );
                }
            }
        }

        w.header(
            "gen_ai_client_operation_duration_seconds",
            "histogram",
            "GenAI operation duration in seconds (OpenTelemetry gen_ai.client.operation.duration)",
        );
        for (e, ops) in entries.iter().zip(&ops) {
            for op in ops {
                let mut by_error = op
                    .genai_duration
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                by_error.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                for (error_type, hist) in &by_error {
                    w.histogram(
                        "gen_ai_client_operation_duration_seconds",
                        &GENAI_DURATION_LE,
                        hist,
                        |w| {
                            w.genai_labels(e, op.operation);
                            w.label("error_type", error_type);
                            w.label("tenant_id", &e.tenant);
                        },
                    );
                }
            }
        }
    }
}

impl Entry {
    fn operation(&self, operation: Operation) -> Arc<OperationSeries> {
        if let Some(op) = self
            .operations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|o| o.operation == operation)
        {
            return op.clone();
        }
        let mut ops = self
            .operations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(op) = ops.iter().find(|o| o.operation == operation) {
            return op.clone();
        }
        let op = Arc::new(OperationSeries {
            operation,
            calls: Default::default(),
            duration: Hist::new(&MODEL_DURATION_BUCKETS),
            genai_tokens: [
                Hist::new(&GENAI_TOKEN_BUCKETS),
                Hist::new(&GENAI_TOKEN_BUCKETS),
            ],
            genai_duration: RwLock::new(Vec::new()),
        });
        ops.push(op.clone());
        op
    }
}

impl OperationSeries {
    fn genai_duration(&self, error_type: &str) -> Arc<Hist> {
        if let Some((_, h)) = self
            .genai_duration
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(e, _)| e == error_type)
        {
            return h.clone();
        }
        let mut all = self
            .genai_duration
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, h)) = all.iter().find(|(e, _)| e == error_type) {
            return h.clone();
        }
        let h = Arc::new(Hist::new(&GENAI_DURATION_BUCKETS));
        all.push((error_type.to_owned(), h.clone()));
        h
    }
}

/// Appends sample lines; label values given to it are already escaped.
struct Writer<'a> {
    out: &'a mut String,
    text004: bool,
}

impl Writer<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let o = &mut *self.out;
        o.push_str("# HELP ");
        o.push_str(name);
        o.push(' ');
        o.push_str(help);
        // prometheus-client ends help text with a period; the same style here.
        o.push('.');
        o.push_str("\n# TYPE ");
        o.push_str(name);
        o.push(' ');
        o.push_str(kind);
        o.push('\n');
    }

    /// OpenMetrics names a counter family without `_total`; 0.0.4 with it.
    fn counter_header(&mut self, family: &str, help: &str) {
        if self.text004 {
            let name = format!("{family}_total");
            self.header(&name, "counter", help);
        } else {
            self.header(family, "counter", help);
        }
    }

    fn start(&mut self, sample: &str) {
        self.out.push_str(sample);
        self.out.push('{');
    }

    fn label(&mut self, key: &str, value: &str) {
        let o = &mut *self.out;
        if !o.ends_with('{') {
            o.push(',');
        }
        o.push_str(key);
        o.push_str("=\"");
        o.push_str(value);
        o.push('"');
    }

    fn seed_labels(&mut self, e: &Entry) {
        self.label("provider", &e.provider);
        self.label("model", &e.model);
        self.label("tenant_id", &e.tenant);
    }

    fn genai_labels(&mut self, e: &Entry, operation: Operation) {
        self.label("gen_ai_operation_name", operation.as_str());
        self.label("gen_ai_provider_name", &e.provider);
        self.label("gen_ai_request_model", &e.model);
    }

    fn end_u64(&mut self, v: u64) {
        self.out.push_str("} ");
        self.out.push_str(itoa::Buffer::new().format(v));
        self.out.push('\n');
    }

    fn end_f64(&mut self, v: f64) {
        self.out.push_str("} ");
        let _ = write!(self.out, "{v:?}");
        self.out.push('\n');
    }

    /// `_sum`, `_count` and every `_bucket` of one histogram series; `labels` writes the
    /// series' labels (after `le` for buckets).
    fn histogram(&mut self, name: &str, le: &[&str], h: &Hist, labels: impl Fn(&mut Writer<'_>)) {
        let own: Vec<u64> = h.own.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let count: u64 = own.iter().sum();
        let mut digits = itoa::Buffer::new();
        let sum = f64::from_bits(h.sum_bits.load(Ordering::Relaxed));
        // The label text once, then copied onto every line.
        let mut series = String::new();
        labels(&mut Writer {
            out: &mut series,
            text004: self.text004,
        });
        let series = series.trim_start_matches(',');
        let o = &mut *self.out;
        for (suffix, value) in [("_sum", None), ("_count", Some(count))] {
            o.push_str(name);
            o.push_str(suffix);
            o.push('{');
            o.push_str(series);
            o.push_str("} ");
            match value {
                Some(n) => o.push_str(digits.format(n)),
                None => {
                    let _ = write!(o, "{sum:?}");
                }
            }
            o.push('\n');
        }
        // Each bucket line is head, le, tail, count: the fixed parts are built once.
        let head = format!("{name}_bucket{{le=\"");
        let tail = format!("\",{series}}} ");
        let mut cumulative = 0u64;
        for (n, le) in own.iter().zip(le) {
            cumulative += n;
            o.push_str(&head);
            o.push_str(le);
            o.push_str(&tail);
            o.push_str(digits.format(cumulative));
            o.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_le_values_are_the_bounds() {
        for (le, bounds) in [
            (&MODEL_DURATION_LE[..], &MODEL_DURATION_BUCKETS[..]),
            (&GENAI_TOKEN_LE[..], &GENAI_TOKEN_BUCKETS[..]),
            (&GENAI_DURATION_LE[..], &GENAI_DURATION_BUCKETS[..]),
        ] {
            assert_eq!(le.len(), bounds.len() + 1);
            for (text, bound) in le.iter().zip(bounds) {
                assert_eq!(text.parse::<f64>(), Ok(*bound));
                assert_eq!(*text, format!("{bound:?}"));
            }
            assert_eq!(le.last(), Some(&"+Inf"));
        }
    }
}
