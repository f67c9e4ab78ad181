//! Where an interaction's sentiment comes from: a star rating, a text's VADER compound score, or
//! both.
//!
//! - A rating `r` on the 1..=5 scale maps to `(r - 3) / 2`, so 1 star is -1, 3 is 0 and 5 is +1.
//! - A text's sentiment is its VADER compound score, already in [-1, 1] (the caller scores the
//!   text; this crate does not depend on a sentiment model).
//! - When both are present the interaction's sentiment is their mean: the rating says how the
//!   customer scored the product, the text how strongly they felt, and neither is more
//!   trustworthy in general.
//! - An explicit sentiment (a team's own model, or seed 000's stream, which carries one) wins
//!   over both: it is the caller's considered score of the same interaction, while the rating
//!   and text would be re-scored by a general-purpose model it chose not to use. Averaging it
//!   with them would blur a calibrated score with an uncalibrated one, and taking it as is keeps
//!   the rule predictable ("what you send is what is scored"). The rating and text are still
//!   stored with the interaction; they are just not scored. See [`event_sentiment`].

use crate::WeberError;

/// The sentiment of a 1..=5 star rating: `(r - 3) / 2`.
///
/// ```
/// assert_eq!(weber::rating_sentiment(5.0), Ok(1.0));
/// assert_eq!(weber::rating_sentiment(2.0), Ok(-0.5));
/// assert!(weber::rating_sentiment(6.0).is_err());
/// ```
pub fn rating_sentiment(rating: f64) -> Result<f64, WeberError> {
    if rating.is_finite() && (1.0..=5.0).contains(&rating) {
        Ok((rating - 3.0) / 2.0)
    } else {
        Err(WeberError::InvalidRating { value: rating })
    }
}

/// One interaction's sentiment from its rating and its text's compound score, whichever exist.
/// `None` when neither does.
///
/// ```
/// assert_eq!(weber::combined_sentiment(Some(5.0), Some(0.5)), Ok(Some(0.75)));
/// assert_eq!(weber::combined_sentiment(None, Some(-0.2)), Ok(Some(-0.2)));
/// assert_eq!(weber::combined_sentiment(None, None), Ok(None));
/// ```
pub fn combined_sentiment(
    rating: Option<f64>,
    text_compound: Option<f64>,
) -> Result<Option<f64>, WeberError> {
    let rating = rating.map(rating_sentiment).transpose()?;
    if let Some(c) = text_compound {
        if !(c.is_finite() && (-1.0..=1.0).contains(&c)) {
            return Err(WeberError::InvalidSentiment { index: 0, value: c });
        }
    }
    Ok(match (rating, text_compound) {
        (Some(r), Some(t)) => Some((r + t) / 2.0),
        (Some(r), None) => Some(r),
        (None, Some(t)) => Some(t),
        (None, None) => None,
    })
}

/// One interaction's sentiment when it may also carry an explicit, precomputed one: the explicit
/// sentiment when present (it must be finite and in [-1, 1]; the rating and text compound are
/// then only range-checked, not combined), else [`combined_sentiment`]. `None` when nothing
/// was given.
///
/// ```
/// assert_eq!(weber::event_sentiment(Some(-0.3), Some(5.0), Some(0.9)), Ok(Some(-0.3)));
/// assert_eq!(weber::event_sentiment(None, Some(5.0), Some(0.5)), Ok(Some(0.75)));
/// assert!(weber::event_sentiment(Some(1.2), None, None).is_err());
/// ```
///
/// # Errors
/// [`WeberError::InvalidSentiment`] for an explicit sentiment or compound outside [-1, 1] (or
/// not finite); [`WeberError::InvalidRating`] for a rating outside 1..=5.
pub fn event_sentiment(
    explicit: Option<f64>,
    rating: Option<f64>,
    text_compound: Option<f64>,
) -> Result<Option<f64>, WeberError> {
    let derived = combined_sentiment(rating, text_compound)?;
    match explicit {
        Some(s) if s.is_finite() && (-1.0..=1.0).contains(&s) => Ok(Some(s)),
        Some(s) => Err(WeberError::InvalidSentiment { index: 0, value: s }),
        None => Ok(derived),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_star_maps_onto_the_sentiment_scale() {
        let got: Vec<f64> = (1..=5)
            .map(|r| rating_sentiment(r as f64).unwrap())
            .collect();
        assert_eq!(got, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        for bad in [0.0, 0.99, 5.01, f64::NAN, f64::INFINITY] {
            assert!(rating_sentiment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn combination_is_the_mean_and_rejects_bad_scores() {
        assert_eq!(combined_sentiment(Some(1.0), Some(-1.0)), Ok(Some(-1.0)));
        assert_eq!(combined_sentiment(Some(3.0), None), Ok(Some(0.0)));
        assert!(combined_sentiment(None, Some(1.5)).is_err());
        assert!(combined_sentiment(Some(0.0), Some(0.0)).is_err());
    }

    #[test]
    fn an_explicit_sentiment_wins_but_every_input_is_checked() {
        assert_eq!(event_sentiment(Some(0.0), Some(1.0), None), Ok(Some(0.0)));
        assert_eq!(event_sentiment(Some(1.0), None, None), Ok(Some(1.0)));
        assert_eq!(event_sentiment(None, None, None), Ok(None));
        for bad in [f64::NAN, f64::INFINITY, -1.0001, 2.0] {
            assert!(event_sentiment(Some(bad), None, None).is_err(), "{bad}");
        }
        // A bad rating is refused even though it would not be scored.
        assert!(event_sentiment(Some(0.5), Some(9.0), None).is_err());
    }
}
