//! The numeric core: ratios over a window of quantized sentiments, the
//! numpy-compatible 99th percentile and the constant/confidence/bias
//! statistics. Allocation-free once the scratch buffers have grown.

use crate::types::{WeberError, SENTIMENT_SCALE};

/// Largest quantized magnitude (`1.0 * SENTIMENT_SCALE`).
pub(crate) const Q_MAX: i16 = 10_000;

/// Reusable buffers (kept per thread or per [`crate::Engine`]).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// `index[i] = max(i, 1)` as f64, grown on demand.
    index: Vec<f64>,
    /// `prefix[i] = q_0 + .. + q_{i-1}` (exact, as f64; `prefix[0] = 0`).
    prefix: Vec<f64>,
    /// Signed ratios `(s_i - b_i) / (|b_i| + eps)`.
    pub(crate) signed: Vec<f64>,
    /// Copy for selection when the window exceeds 101.
    pub(crate) select: Vec<f64>,
    /// Sorting buffer of the batch path.
    pub(crate) keyed: Vec<Keyed>,
    /// Quantized window of the batch path.
    pub(crate) q: Vec<i16>,
}

impl Scratch {
    pub(crate) const fn new() -> Self {
        Self {
            index: Vec::new(),
            prefix: Vec::new(),
            signed: Vec::new(),
            select: Vec::new(),
            keyed: Vec::new(),
            q: Vec::new(),
        }
    }
}

/// An interaction reduced to its key and quantized sentiment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyed {
    pub(crate) time_ms: i64,
    pub(crate) tiebreak: u64,
    pub(crate) q: i16,
}

/// Quantizes a sentiment to the 1e-4 grid: `round(s * 10000)` (half away
/// from zero). Rejects NaN, infinities and values outside `[-1, 1]`.
#[inline]
pub(crate) fn quantize_at(sentiment: f64, index: usize) -> Result<i16, WeberError> {
    if (-1.0..=1.0).contains(&sentiment) {
        // In range, so the rounded value is within [-10000, 10000].
        Ok((sentiment * SENTIMENT_SCALE).round() as i16)
    } else {
        Err(WeberError::InvalidSentiment {
            index,
            value: sentiment,
        })
    }
}

/// Checks pre-quantized values are within `[-10000, 10000]`.
pub(crate) fn check_quantized(q: &[i16]) -> Result<(), WeberError> {
    match q.iter().position(|v| !(-Q_MAX..=Q_MAX).contains(v)) {
        None => Ok(()),
        Some(index) => Err(WeberError::InvalidSentiment {
            index,
            value: q
                .get(index)
                .map_or(f64::NAN, |&v| f64::from(v) / SENTIMENT_SCALE),
        }),
    }
}

/// Fills `scratch.signed` with the signed ratios of the window `q`
/// (quantized, in order). With `P_i = q_0 + .. + q_{i-1}` (exact integer),
/// `s_i = q_i / 1e4` and `b_i = P_i / (i * 1e4)`:
///
/// `ratio_i = |s_i - b_i| / (|b_i| + eps) = |q_i * i - P_i| / (|P_i| + eps * 1e4 * i)`
///
/// (multiply numerator and denominator by `i * 1e4`). The numerator and
/// `|P_i|` are exact integers in `f64`, so one division (plus the rounding of
/// `eps * 1e4 * i`) gives the ratio to within a few ulps of the exact value;
/// its sign is exactly the sign of `s_i - b_i`. `signed_0 = 0`.
pub(crate) fn signed_ratios(q: &[i16], eps: f64, scratch: &mut Scratch) {
    let n = q.len();
    let have = scratch.index.len();
    if have < n {
        scratch.index.extend((have..n).map(|i| i.max(1) as f64));
    }
    scratch.prefix.clear();
    let mut acc: i64 = 0;
    scratch.prefix.extend(q.iter().map(|&v| {
        let p = acc;
        acc += i64::from(v);
        p as f64
    }));
    let e = eps * SENTIMENT_SCALE;
    scratch.signed.clear();
    let index = scratch.index.get(..n).unwrap_or(&[]);
    scratch.signed.extend(
        q.iter()
            .zip(&scratch.prefix)
            .zip(index)
            .map(|((&v, &p), &i)| (f64::from(v) * i - p) / (p.abs() + e * i)),
    );
    // i = 0: index 1 and prefix 0 give q_0 / e; the ratio is 0 by definition.
    if let Some(first) = scratch.signed.first_mut() {
        *first = 0.0;
    }
}

/// Result of [`stats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    pub(crate) constant: f64,
    pub(crate) confidence: f64,
    pub(crate) bias_ratio: Option<f64>,
}

const LANES: usize = 4;

/// numpy's `_lerp`: `a + (b - a) * t` for `t < 0.5`, else
/// `b - (b - a) * (1 - t)`.
#[inline]
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// numpy's `(n - 1) * q` virtual index split into `(lo, gamma)`, or `None`
/// when it is at or past the last index (the result is then the maximum).
#[inline]
fn virtual_index(n: usize, quantile: f64) -> Option<(usize, f64)> {
    let last = n.checked_sub(1)? as f64;
    let vi = last * quantile;
    if vi >= last {
        return None;
    }
    let lo = vi.floor();
    Some((lo as usize, vi - lo))
}

/// numpy `percentile(values, 100 * quantile)` with the default "linear"
/// method, computed in place on `buf` (reordered). `buf` must be NaN-free
/// (callers check); an empty `buf` gives NaN.
pub(crate) fn percentile_in_place(buf: &mut [f64], quantile: f64) -> f64 {
    let max = buf.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let Some((lo, gamma)) = virtual_index(buf.len(), quantile) else {
        return if buf.is_empty() { f64::NAN } else { max };
    };
    if lo >= buf.len() {
        return max;
    }
    let (_, a, right) = buf.select_nth_unstable_by(lo, f64::total_cmp);
    let a = *a;
    let b = if right.is_empty() {
        a
    } else {
        right.iter().copied().fold(f64::INFINITY, f64::min)
    };
    lerp(a, b, gamma)
}

#[inline]
fn max4(a: [f64; LANES]) -> f64 {
    let x = if a[0] > a[1] { a[0] } else { a[1] };
    let y = if a[2] > a[3] { a[2] } else { a[3] };
    if x > y {
        x
    } else {
        y
    }
}

/// The second largest `|signed_i|` in the multiset sense (equal to `m1`
/// when the maximum occurs twice), given the maximum `m1`; `n >= 2`.
fn second_largest(signed: &[f64], m1: f64) -> f64 {
    let mut below = [f64::NEG_INFINITY; LANES];
    let mut at_max = [0.0f64; LANES];
    let chunks = signed.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            let a = c[j].abs();
            let lt = a < m1;
            below[j] = if lt && a > below[j] { a } else { below[j] };
            at_max[j] += if lt { 0.0 } else { 1.0 };
        }
    }
    for (j, r) in tail.iter().enumerate() {
        let a = r.abs();
        let lt = a < m1;
        below[j] = if lt && a > below[j] { a } else { below[j] };
        at_max[j] += if lt { 0.0 } else { 1.0 };
    }
    if (at_max[0] + at_max[1]) + (at_max[2] + at_max[3]) >= 2.0 {
        m1
    } else {
        max4(below)
    }
}

/// Per-lane accumulators of pass 1; lanes keep the loop branch-free so it vectorises.
#[derive(Default)]
struct Pass1 {
    neg_sum: [f64; LANES],
    neg_cnt: [f64; LANES],
    pos_sum: [f64; LANES],
    pos_cnt: [f64; LANES],
    max: [f64; LANES],
}

impl Pass1 {
    #[inline(always)]
    fn add(&mut self, j: usize, r: f64) {
        let a = r.abs();
        self.max[j] = if a > self.max[j] { a } else { self.max[j] };
        let neg = r < 0.0;
        let pos = r > 0.0;
        self.neg_sum[j] += if neg { -r } else { 0.0 };
        self.neg_cnt[j] += if neg { 1.0 } else { 0.0 };
        self.pos_sum[j] += if pos { r } else { 0.0 };
        self.pos_cnt[j] += if pos { 1.0 } else { 0.0 };
    }
}

/// The statistics of a window of signed ratios (`|signed_i|` = ratio_i):
/// constant/confidence over the ratios `<= p99` when there are at least 3,
/// and the negativity bias over all of them.
pub(crate) fn stats(signed: &[f64], eps: f64, select: &mut Vec<f64>) -> Stats {
    let n = signed.len();

    // Pass 1: bias sums (lane-parallel) and the two largest ratios.
    let mut acc = Pass1::default();
    let chunks = signed.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (j, &r) in c.iter().enumerate() {
            acc.add(j, r);
        }
    }
    for (j, &r) in tail.iter().enumerate() {
        acc.add(j, r);
    }
    let Pass1 {
        neg_sum,
        neg_cnt,
        pos_sum,
        pos_cnt,
        max,
    } = acc;
    let sum4 = |a: [f64; LANES]| (a[0] + a[1]) + (a[2] + a[3]);
    let (ns, nc, ps, pc) = (sum4(neg_sum), sum4(neg_cnt), sum4(pos_sum), sum4(pos_cnt));
    let m1 = max4(max);
    let bias_ratio = if nc > 0.0 && pc > 0.0 && ps > 0.0 {
        let b = (ns / nc) / (ps / pc);
        b.is_finite().then_some(b)
    } else {
        None
    };

    if n < 3 {
        return Stats {
            constant: 0.0,
            confidence: 0.0,
            bias_ratio,
        };
    }

    // 99th percentile (numpy "linear"). For n <= 101 the interpolation only
    // needs the two largest ratios.
    let p99 = match virtual_index(n, 0.99) {
        None => m1,
        Some((lo, gamma)) if lo + 2 >= n => lerp(second_largest(signed, m1), m1, gamma),
        Some(_) => {
            select.clear();
            select.extend(signed.iter().map(|r| r.abs()));
            percentile_in_place(select, 0.99)
        }
    };

    // Pass 2: mean of the kept ratios.
    let mut sum = [0.0f64; LANES];
    let mut cnt = [0.0f64; LANES];
    let chunks = signed.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            let a = c[j].abs();
            let keep = a <= p99;
            sum[j] += if keep { a } else { 0.0 };
            cnt[j] += if keep { 1.0 } else { 0.0 };
        }
    }
    for (j, r) in tail.iter().enumerate() {
        let a = r.abs();
        let keep = a <= p99;
        sum[j] += if keep { a } else { 0.0 };
        cnt[j] += if keep { 1.0 } else { 0.0 };
    }
    let count = sum4(cnt);
    if count <= 0.0 {
        return Stats {
            constant: 0.0,
            confidence: 0.0,
            bias_ratio,
        };
    }
    let mean = sum4(sum) / count;

    // Pass 3: population variance of the kept ratios.
    let mut sq = [0.0f64; LANES];
    let chunks = signed.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            let a = c[j].abs();
            let d = a - mean;
            sq[j] += if a <= p99 { d * d } else { 0.0 };
        }
    }
    for (j, r) in tail.iter().enumerate() {
        let a = r.abs();
        let d = a - mean;
        sq[j] += if a <= p99 { d * d } else { 0.0 };
    }
    let std = (sum4(sq) / count).sqrt();
    let confidence = (1.0 - std / (mean + eps)).clamp(0.0, 1.0);
    Stats {
        constant: mean,
        confidence,
        bias_ratio,
    }
}
