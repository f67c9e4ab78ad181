//! Value types shared by the batch and streaming paths.

use serde::{Deserialize, Serialize};

/// Fixed-point scale of the sentiment grid: sentiments are stored as
/// `round(s * SCALE)` in an `i16`, i.e. on a grid of `1 / SCALE = 1e-4`.
pub const SENTIMENT_SCALE: f64 = 10_000.0;

/// Largest accepted window (`W`).
pub const MAX_WINDOW: usize = 1 << 20;

/// Default window `W`.
pub const DEFAULT_WINDOW: usize = 100;

/// Default `eps` of the ratio denominator.
pub const DEFAULT_EPS: f64 = 0.1;

/// Smallest accepted `eps` (keeps every ratio finite: at most `2 / MIN_EPS`).
pub const MIN_EPS: f64 = 1e-9;

/// Largest accepted `eps`.
pub const MAX_EPS: f64 = 1e9;

/// Errors of the engine. Every error is about an input; the engine itself
/// never panics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WeberError {
    /// A sentiment was NaN, infinite or outside `[-1, 1]` (or, for
    /// pre-quantized input, outside `[-10000, 10000]`, reported divided by
    /// [`SENTIMENT_SCALE`]). `index` is the position in the caller's slice
    /// (0 for single-event calls).
    #[error("sentiment at index {index} is {value}; expected a finite number in [-1, 1]")]
    InvalidSentiment {
        /// Position of the offending value in the input slice.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A ratio passed to [`crate::constant_and_confidence`] was NaN,
    /// infinite or negative.
    #[error("ratio at index {index} is {value}; expected a finite, non-negative number")]
    InvalidRatio {
        /// Position of the offending value in the input slice.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// The window was 0 or larger than [`MAX_WINDOW`].
    #[error("window {0} is out of range 1..={MAX_WINDOW}")]
    InvalidWindow(usize),
    /// `eps` was NaN, infinite or outside `[MIN_EPS, MAX_EPS]`.
    #[error("eps {0} is out of range [{MIN_EPS}, {MAX_EPS}]")]
    InvalidEps(f64),
    /// A star rating was NaN or outside `1..=5`.
    #[error("rating {value} is out of range; expected 1 to 5 stars")]
    InvalidRating {
        /// The offending value.
        value: f64,
    },
}

/// One interaction of one user: a sentiment in `[-1, 1]`, an event time in
/// milliseconds and a tiebreak. Interactions are ordered by
/// `(time_ms, tiebreak)` ascending; two interactions with the same key are
/// the same event (the first one seen wins).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Sentiment in `[-1, 1]`; quantized to the 1e-4 grid on entry.
    pub sentiment: f64,
    /// Event time in milliseconds (an input; the engine never reads a clock).
    pub time_ms: i64,
    /// Tiebreak among events with the same time (e.g. a sequence number).
    pub tiebreak: u64,
}

impl Interaction {
    /// Builds an interaction.
    #[must_use]
    pub const fn new(sentiment: f64, time_ms: i64, tiebreak: u64) -> Self {
        Self {
            sentiment,
            time_ms,
            tiebreak,
        }
    }

    /// The ordering key `(time_ms, tiebreak)`.
    #[must_use]
    pub const fn key(&self) -> (i64, u64) {
        (self.time_ms, self.tiebreak)
    }
}

/// Validated engine parameters: the window `W` and the ratio `eps`.
///
/// Invalid parameters are unrepresentable: build them with
/// [`WeberParams::new`] (or [`Default`]: `W = 100`, `eps = 0.1`). When
/// deserialized, the same validation applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawParams", into = "RawParams")]
pub struct WeberParams {
    window: usize,
    eps: f64,
}

#[derive(Serialize, Deserialize)]
struct RawParams {
    window: usize,
    eps: f64,
}

impl TryFrom<RawParams> for WeberParams {
    type Error = WeberError;
    fn try_from(raw: RawParams) -> Result<Self, WeberError> {
        Self::new(raw.window, raw.eps)
    }
}

impl From<WeberParams> for RawParams {
    fn from(p: WeberParams) -> Self {
        Self {
            window: p.window,
            eps: p.eps,
        }
    }
}

impl Default for WeberParams {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            eps: DEFAULT_EPS,
        }
    }
}

impl WeberParams {
    /// Validates and builds parameters: `1 <= window <= MAX_WINDOW`,
    /// `eps` finite and in `[MIN_EPS, MAX_EPS]`.
    ///
    /// # Errors
    /// [`WeberError::InvalidWindow`] or [`WeberError::InvalidEps`].
    pub fn new(window: usize, eps: f64) -> Result<Self, WeberError> {
        if window == 0 || window > MAX_WINDOW {
            return Err(WeberError::InvalidWindow(window));
        }
        check_eps(eps)?;
        Ok(Self { window, eps })
    }

    /// The window `W`: a profile covers the most recent `W` interactions.
    #[must_use]
    pub const fn window(&self) -> usize {
        self.window
    }

    /// The `eps` of the ratio denominator `|baseline| + eps`.
    #[must_use]
    pub const fn eps(&self) -> f64 {
        self.eps
    }
}

pub(crate) fn check_eps(eps: f64) -> Result<(), WeberError> {
    if (MIN_EPS..=MAX_EPS).contains(&eps) {
        Ok(())
    } else {
        Err(WeberError::InvalidEps(eps))
    }
}

/// Sensitivity segment derived from the Weber constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SensitivitySegment {
    /// `constant >= 0.8`.
    #[serde(rename = "Highly_Sensitive")]
    HighlySensitive,
    /// `0.4 <= constant < 0.8`.
    #[serde(rename = "Moderately_Sensitive")]
    ModeratelySensitive,
    /// `0.2 <= constant < 0.4`.
    #[serde(rename = "Low_Sensitive")]
    LowSensitive,
    /// `constant < 0.2` (and, defensively, NaN).
    #[serde(rename = "Insensitive")]
    Insensitive,
}

impl SensitivitySegment {
    /// Every segment, most sensitive first.
    pub const ALL: [SensitivitySegment; 4] = [
        Self::HighlySensitive,
        Self::ModeratelySensitive,
        Self::LowSensitive,
        Self::Insensitive,
    ];

    /// Segment of a Weber constant: `>= 0.8` Highly_Sensitive, `>= 0.4`
    /// Moderately_Sensitive, `>= 0.2` Low_Sensitive, else Insensitive.
    /// The comparisons are exact on the `f64` value.
    #[must_use]
    pub fn from_constant(constant: f64) -> Self {
        if constant >= 0.8 {
            Self::HighlySensitive
        } else if constant >= 0.4 {
            Self::ModeratelySensitive
        } else if constant >= 0.2 {
            Self::LowSensitive
        } else {
            Self::Insensitive
        }
    }

    /// The wire name: `"Highly_Sensitive"`, `"Moderately_Sensitive"`,
    /// `"Low_Sensitive"` or `"Insensitive"`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::HighlySensitive => "Highly_Sensitive",
            Self::ModeratelySensitive => "Moderately_Sensitive",
            Self::LowSensitive => "Low_Sensitive",
            Self::Insensitive => "Insensitive",
        }
    }
}

/// A name that is not one of the four segments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown segment '{0}' (expected Highly_Sensitive, Moderately_Sensitive, Low_Sensitive or Insensitive)")]
pub struct UnknownSegment(pub String);

impl std::str::FromStr for SensitivitySegment {
    type Err = UnknownSegment;

    /// Parses the wire name, exactly as [`SensitivitySegment::as_str`] writes it.
    ///
    /// ```
    /// use weber::SensitivitySegment;
    /// assert_eq!("Low_Sensitive".parse(), Ok(SensitivitySegment::LowSensitive));
    /// assert!("low".parse::<SensitivitySegment>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|seg| seg.as_str() == s)
            .ok_or_else(|| UnknownSegment(s.to_owned()))
    }
}

impl std::fmt::Display for SensitivitySegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Weber constant with its confidence (see the crate docs for the
/// formulas).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConstantEstimate {
    /// Mean of the ratios at or below their 99th percentile (0 when fewer
    /// than 3 ratios).
    pub weber_constant: f64,
    /// `max(0, 1 - std / (constant + eps))` (0 when fewer than 3 ratios).
    pub calculation_confidence: f64,
}

/// A user's sensitivity profile over the most recent `W` interactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeberProfile {
    /// The Weber constant (always finite and `>= 0`).
    pub weber_constant: f64,
    /// Confidence in `[0, 1]`.
    pub calculation_confidence: f64,
    /// Segment of `weber_constant`.
    pub sensitivity_segment: SensitivitySegment,
    /// Negativity bias: mean ratio of drops over mean ratio of rises; `None`
    /// unless the window has at least one of each.
    pub bias_ratio: Option<f64>,
    /// Number of interactions in the window (`min(distinct events, W)`).
    pub window_len: usize,
    /// Time of the newest interaction in the window (`None` when empty).
    pub newest_time_ms: Option<i64>,
}
