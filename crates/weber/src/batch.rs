//! Batch profiles and the low-level slice functions.

use std::cell::Cell;

use crate::kernel::{self, Keyed, Scratch};
use crate::types::{
    check_eps, ConstantEstimate, Interaction, SensitivitySegment, WeberError, WeberParams,
    WeberProfile,
};

thread_local! {
    static SCRATCH: Cell<Scratch> = const { Cell::new(Scratch::new()) };
}

/// Runs `f` with this thread's reusable scratch buffers (a fresh, empty
/// scratch if the thread-local is unavailable). Never panics.
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH.try_with(Cell::take).unwrap_or_default();
    let out = f(&mut scratch);
    let _ = SCRATCH.try_with(move |c| c.set(scratch));
    out
}

/// Quantizes one sentiment to the fixed-point grid: `round(s * 10000)`
/// (half away from zero), as an `i16` in `[-10000, 10000]`.
///
/// # Errors
/// [`WeberError::InvalidSentiment`] (index 0) for NaN, infinities and values
/// outside `[-1, 1]`.
pub fn quantize(sentiment: f64) -> Result<i16, WeberError> {
    kernel::quantize_at(sentiment, 0)
}

/// What [`normalize`] learned about a history.
pub(crate) struct Normalized {
    /// Distinct events in the history.
    pub(crate) distinct: usize,
    /// Key of the newest event.
    pub(crate) newest: Option<(i64, u64)>,
}

/// Validates every sentiment, orders by `(time, tiebreak)` (stable),
/// drops repeated keys keeping the first, and leaves the quantized last
/// `window` sentiments in `scratch.q`.
pub(crate) fn normalize(
    interactions: &[Interaction],
    window: usize,
    scratch: &mut Scratch,
) -> Result<Normalized, WeberError> {
    // Validate and quantize everything, detecting the common
    // already-ordered case.
    let mut strictly_sorted = true;
    let mut prev: Option<(i64, u64)> = None;
    scratch.q.clear();
    for (i, it) in interactions.iter().enumerate() {
        scratch.q.push(kernel::quantize_at(it.sentiment, i)?);
        let key = it.key();
        if prev.is_some_and(|p| key <= p) {
            strictly_sorted = false;
        }
        prev = Some(key);
    }
    if strictly_sorted {
        let start = interactions.len().saturating_sub(window);
        scratch.q.drain(..start);
        return Ok(Normalized {
            distinct: interactions.len(),
            newest: interactions.last().map(Interaction::key),
        });
    }
    scratch.q.clear();
    scratch.keyed.clear();
    for (i, it) in interactions.iter().enumerate() {
        scratch.keyed.push(Keyed {
            time_ms: it.time_ms,
            tiebreak: it.tiebreak,
            q: kernel::quantize_at(it.sentiment, i)?,
        });
    }
    // Stable: among equal keys the first in input order stays first.
    scratch.keyed.sort_by_key(|k| (k.time_ms, k.tiebreak));
    scratch.keyed.dedup_by_key(|k| (k.time_ms, k.tiebreak));
    let distinct = scratch.keyed.len();
    let start = distinct.saturating_sub(window);
    let tail = scratch.keyed.get(start..).unwrap_or(&[]);
    scratch.q.extend(tail.iter().map(|k| k.q));
    Ok(Normalized {
        distinct,
        newest: scratch.keyed.last().map(|k| (k.time_ms, k.tiebreak)),
    })
}

/// The profile of an ordered window of quantized sentiments.
pub(crate) fn profile_of_window(
    q: &[i16],
    eps: f64,
    newest_time_ms: Option<i64>,
    scratch: &mut Scratch,
) -> WeberProfile {
    kernel::signed_ratios(q, eps, scratch);
    let st = kernel::stats(&scratch.signed, eps, &mut scratch.select);
    WeberProfile {
        weber_constant: st.constant,
        calculation_confidence: st.confidence,
        sensitivity_segment: SensitivitySegment::from_constant(st.constant),
        bias_ratio: st.bias_ratio,
        window_len: q.len(),
        newest_time_ms: if q.is_empty() { None } else { newest_time_ms },
    }
}

fn profile_with(
    interactions: &[Interaction],
    params: &WeberParams,
    scratch: &mut Scratch,
) -> Result<WeberProfile, WeberError> {
    let norm = normalize(interactions, params.window(), scratch)?;
    let q = std::mem::take(&mut scratch.q);
    let p = profile_of_window(&q, params.eps(), norm.newest.map(|k| k.0), scratch);
    scratch.q = q;
    Ok(p)
}

/// The profile of one user's interactions (any order, duplicates allowed):
/// sorts a copy stably by `(time_ms, tiebreak)`, keeps the first of each
/// repeated key, and profiles the most recent `W`.
///
/// Uses a per-thread scratch, so it does not allocate once warmed up.
///
/// # Errors
/// [`WeberError::InvalidSentiment`] if any sentiment (even outside the
/// window) is NaN, infinite or outside `[-1, 1]`.
pub fn profile(
    interactions: &[Interaction],
    params: &WeberParams,
) -> Result<WeberProfile, WeberError> {
    with_scratch(|s| profile_with(interactions, params, s))
}

/// Profiles many users, one result per user slice, in order. For a
/// CSR-like layout (`offsets`, `data`), pass
/// `offsets.windows(2).map(|w| &data[w[0]..w[1]])`.
pub fn profiles_batch<'a, I>(
    users: I,
    params: &WeberParams,
) -> Vec<Result<WeberProfile, WeberError>>
where
    I: IntoIterator<Item = &'a [Interaction]>,
{
    let mut engine = Engine::new(*params);
    users.into_iter().map(|u| engine.profile(u)).collect()
}

/// A reusable batch engine: parameters plus scratch buffers, so profiling
/// many users allocates nothing after warm-up. One per thread.
#[derive(Debug, Default)]
pub struct Engine {
    params: WeberParams,
    scratch: Scratch,
}

impl Engine {
    /// An engine with the given parameters.
    #[must_use]
    pub fn new(params: WeberParams) -> Self {
        Self {
            params,
            scratch: Scratch::new(),
        }
    }

    /// The engine's parameters.
    #[must_use]
    pub const fn params(&self) -> &WeberParams {
        &self.params
    }

    /// Same as [`profile`], reusing this engine's buffers.
    ///
    /// # Errors
    /// As [`profile`].
    pub fn profile(&mut self, interactions: &[Interaction]) -> Result<WeberProfile, WeberError> {
        profile_with(interactions, &self.params, &mut self.scratch)
    }

    /// Fast path for pre-ordered, pre-deduplicated, pre-quantized data
    /// (e.g. a column store holding `round(s * 10000)`): profiles the last
    /// `W` values of `quantized` (oldest first). `newest_time_ms` is copied
    /// into the profile.
    ///
    /// # Errors
    /// [`WeberError::InvalidSentiment`] if a value is outside
    /// `[-10000, 10000]` (the index is within the last-`W` window).
    pub fn profile_quantized(
        &mut self,
        quantized: &[i16],
        newest_time_ms: Option<i64>,
    ) -> Result<WeberProfile, WeberError> {
        let start = quantized.len().saturating_sub(self.params.window());
        let q = quantized.get(start..).unwrap_or(&[]);
        kernel::check_quantized(q)?;
        Ok(profile_of_window(
            q,
            self.params.eps(),
            newest_time_ms,
            &mut self.scratch,
        ))
    }

    /// Scratch access for the streaming path.
    pub(crate) fn scratch_mut(&mut self) -> &mut Scratch {
        &mut self.scratch
    }
}

/// `ratio_i` for every position of an ordered window of sentiments (no
/// windowing applied here): `baseline_0 = s_0`,
/// `baseline_i = mean(s_0..s_{i-1})`,
/// `ratio_i = |s_i - baseline_i| / (|baseline_i| + eps)`. Sentiments are
/// quantized to the 1e-4 grid first.
///
/// # Errors
/// [`WeberError::InvalidSentiment`] or [`WeberError::InvalidEps`].
pub fn ratios(sentiments: &[f64], eps: f64) -> Result<Vec<f64>, WeberError> {
    check_eps(eps)?;
    with_scratch(|s| {
        let q = quantize_all(sentiments)?;
        kernel::signed_ratios(&q, eps, s);
        Ok(s.signed.iter().map(|r| r.abs()).collect())
    })
}

/// The Weber constant and confidence of a slice of ratios (any order):
/// the mean and population standard deviation of the ratios `<=` their
/// numpy-linear 99th percentile; zeros when fewer than 3 ratios.
///
/// # Errors
/// [`WeberError::InvalidRatio`] for NaN, infinite or negative ratios;
/// [`WeberError::InvalidEps`].
pub fn constant_and_confidence(ratios: &[f64], eps: f64) -> Result<ConstantEstimate, WeberError> {
    check_eps(eps)?;
    if let Some(index) = ratios.iter().position(|r| !(r.is_finite() && *r >= 0.0)) {
        return Err(WeberError::InvalidRatio {
            index,
            value: ratios.get(index).copied().unwrap_or(f64::NAN),
        });
    }
    let mut select = Vec::new();
    let st = kernel::stats(ratios, eps, &mut select);
    Ok(ConstantEstimate {
        weber_constant: st.constant,
        calculation_confidence: st.confidence,
    })
}

/// The negativity bias of an ordered window of sentiments: mean `ratio_i`
/// over `s_i < baseline_i` divided by mean `ratio_i` over
/// `s_i > baseline_i`; `None` unless both sides are non-empty.
///
/// # Errors
/// [`WeberError::InvalidSentiment`] or [`WeberError::InvalidEps`].
pub fn bias_ratio(sentiments: &[f64], eps: f64) -> Result<Option<f64>, WeberError> {
    check_eps(eps)?;
    with_scratch(|s| {
        let q = quantize_all(sentiments)?;
        kernel::signed_ratios(&q, eps, s);
        Ok(kernel::stats(&s.signed, eps, &mut s.select).bias_ratio)
    })
}

/// numpy's `percentile(values, percent)` with the default "linear" method
/// (Hyndman & Fan type 7, numpy's exact interpolation formula). `None` for
/// an empty slice, any NaN, or `percent` outside `[0, 100]`.
#[must_use]
pub fn percentile_linear(values: &[f64], percent: f64) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) || !(0.0..=100.0).contains(&percent) {
        return None;
    }
    let mut buf = values.to_vec();
    Some(kernel::percentile_in_place(&mut buf, percent / 100.0))
}

fn quantize_all(sentiments: &[f64]) -> Result<Vec<i16>, WeberError> {
    sentiments
        .iter()
        .enumerate()
        .map(|(i, &s)| kernel::quantize_at(s, i))
        .collect()
}
