//! # weber: Weber's-law consumer sensitivity engine
//!
//! A pure library (no I/O, no async, no clock: event times are inputs) that
//! turns a user's interaction sentiments into a sensitivity profile: how
//! large a change in sentiment is relative to the user's running baseline.
//! Batch ([`profile`], [`Engine`], [`profiles_batch`]) and streaming
//! ([`ProfileState`]) paths share one kernel and give bit-identical results.
//!
//! ```
//! use weber::{profile, Interaction, ProfileState, Update, WeberParams};
//!
//! let params = WeberParams::default();
//! let events: Vec<Interaction> = [0.5, -0.5, 0.8, 0.1]
//!     .iter()
//!     .enumerate()
//!     .map(|(i, s)| Interaction::new(*s, 1_000 * i as i64, 0))
//!     .collect();
//! let batch = profile(&events, &params)?;
//! assert!(batch.weber_constant > 0.0);
//!
//! // The streaming path, fed the same events in order, agrees exactly.
//! let mut state = ProfileState::new();
//! for event in &events {
//!     assert!(matches!(state.apply(event, &params)?, Update::Updated(_)));
//! }
//! assert_eq!(state.profile(&params), Some(batch));
//! # Ok::<(), weber::WeberError>(())
//! ```
//!
//! ## Inputs and ordering
//!
//! An [`Interaction`] is `(sentiment, time_ms, tiebreak)`. Sentiments must be
//! finite and in `[-1, 1]`; NaN, infinities and out-of-range values are
//! **rejected** with [`WeberError::InvalidSentiment`] (never clamped). Order
//! is `(time_ms, tiebreak)` ascending; interactions with the same key are one
//! event and the first one seen (input order in batch, arrival order in
//! streaming) wins. A profile covers the most recent `W` distinct events
//! (`W = 100` by default, see [`WeberParams`]).
//!
//! ## Where sentiments come from
//!
//! [`rating_sentiment`] maps 1..=5 stars to `(r - 3) / 2`; [`combined_sentiment`] takes the mean
//! of that and a text's VADER compound score when an interaction has both; [`event_sentiment`]
//! lets an explicit, precomputed sentiment win over both.
//!
//! ## Quantization
//!
//! At entry every sentiment is quantized to a fixed-point grid of `1e-4`:
//! `q = round(s * 10000)` (half away from zero) stored as `i16`, and the
//! engine computes with `s = q / 10000`. VADER compound scores already have
//! 4 decimals and star ratings map to `(r - 3) / 2`, so real inputs are
//! represented exactly. Both paths quantize identically, which is what keeps
//! the streaming state small and the two paths bit-identical.
//!
//! ## Formulas
//!
//! Within the window, with sentiments `s_0 .. s_{n-1}` in order:
//!
//! * `baseline_0 = s_0`; `baseline_i = mean(s_0 .. s_{i-1})` for `i >= 1`.
//! * `ratio_i = |s_i - baseline_i| / (|baseline_i| + eps)`, `eps = 0.1` by
//!   default. `ratio_0 = 0` and it **is** included. Computed exactly as
//!   written but rearranged for one division: with the exact integer prefix
//!   sum `P_i = q_0 + .. + q_{i-1}`,
//!   `ratio_i = |q_i * i - P_i| / (|P_i| + eps * 10000 * i)`; numerator and
//!   `|P_i|` are exact, so each ratio is within a few ulps of the exact
//!   value, and `s_i < baseline_i` is decided exactly (sign of `q_i*i - P_i`).
//! * `p99` = the 99th percentile of the `n` ratios with numpy's default
//!   "linear" method: `v = (n - 1) * 0.99`, `lo = floor(v)`, `g = v - lo`,
//!   `a`, `b` = the `lo`-th and `(lo+1)`-th smallest ratios,
//!   `p99 = a + (b - a) * g` if `g < 0.5` else `b - (b - a) * (1 - g)`
//!   (the maximum when `v >= n - 1`). For `n <= 101` only the two largest
//!   ratios are needed; larger windows use `select_nth_unstable`.
//! * kept = the ratios `<= p99`.
//!   `weber_constant = mean(kept)`;
//!   `std = sqrt(mean((kept - weber_constant)^2))` (population, ddof = 0);
//!   `calculation_confidence = max(0, 1 - std / (weber_constant + eps))`
//!   (always in `[0, 1]`).
//!   With fewer than 3 ratios (`n < 3`) both are `0`.
//! * `sensitivity_segment`: `>= 0.8` `Highly_Sensitive`, `>= 0.4`
//!   `Moderately_Sensitive`, `>= 0.2` `Low_Sensitive`, else `Insensitive`
//!   ([`SensitivitySegment`]; exact `f64` comparisons).
//! * `bias_ratio` (negativity bias) = `mean(ratio_i : s_i < baseline_i) /
//!   mean(ratio_i : s_i > baseline_i)` over all `n` ratios of the window (not
//!   outlier-filtered); `None` unless both sides are non-empty. Because the
//!   baselines are exact on the grid, a constant sequence has
//!   `s_i == baseline_i` and contributes to neither side.
//!
//! **Deviation from seed 000:** the seed's `ProductionWeberEngine` used
//! float32 numpy arrays; this crate uses `f64` throughout (plus the exact
//! integer prefix sums above). The committed numpy oracle
//! (`oracle/weber_oracle.py`, float64, computing `baseline` and `ratio`
//! literally) agrees to ~1e-15 on constant, confidence and bias (test
//! tolerance 1e-6) and exactly on segments.
//!
//! ## Parameters
//!
//! [`WeberParams`] holds `W` in `1..=MAX_WINDOW` and `eps` in
//! `[MIN_EPS, MAX_EPS]` (finite); invalid values are unrepresentable. The
//! `eps` bounds keep every ratio, sum and square finite, so all outputs are
//! finite.
//!
//! ## Streaming contract
//!
//! [`ProfileState`] keeps only the last `W` quantized sentiments (oldest
//! first), the `(time_ms, tiebreak)` key of the newest event and a count of
//! distinct events. [`ProfileState::apply`] returns:
//!
//! * [`Update::Updated`] for an event whose key is greater than the newest:
//!   it is appended (the oldest is dropped when full) and the profile is
//!   re-derived over the window (`O(W)`, no allocation);
//! * [`Update::Duplicate`] when the key equals the newest key: nothing
//!   changes (the first arrival wins, as in batch);
//! * [`Update::NeedsRebuild`] for **any** event older than the newest key
//!   (late events, late duplicates), or when `params.window()` grew past the
//!   retained history. Nothing changes; the caller (a worker with the stored
//!   history) stores the event if its key is new and replaces the state with
//!   [`ProfileState::rebuild`] over the stored, de-duplicated history. Late
//!   events are rare, which is what keeps the state tiny.
//!
//! Invalid sentiments return `Err` and leave the state unchanged. Replaying
//! any arrival order this way yields exactly the batch [`profile`] of the
//! de-duplicated history (property-tested).
//!
//! ## Memory
//!
//! At `W = 100` a state takes `size_of::<ProfileState>()` = 48 bytes plus
//! 200 heap bytes (`100 x i16`): **248 bytes** per user (goal: <= 512; the
//! seed claimed 4 KB). [`ProfileState::footprint_bytes`] reports it and a
//! test asserts the bound.
//!
//! ## Errors and panics
//!
//! No function panics on any input. Input problems are [`WeberError`]s; no
//! `unwrap` is applied to input-derived data.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod kernel;
mod signal;
mod stream;
mod types;

pub use batch::{
    bias_ratio, constant_and_confidence, percentile_linear, profile, profiles_batch, quantize,
    ratios, Engine,
};
pub use signal::{combined_sentiment, event_sentiment, rating_sentiment};
pub use stream::{Calculation, ProfileState, Update};
pub use types::{
    ConstantEstimate, Interaction, SensitivitySegment, UnknownSegment, WeberError, WeberParams,
    WeberProfile, DEFAULT_EPS, DEFAULT_WINDOW, MAX_EPS, MAX_WINDOW, MIN_EPS, SENTIMENT_SCALE,
};
