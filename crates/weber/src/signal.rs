//! Where an interaction's sentiment comes from: a star rating, a text's VADER compound score, or
//! both.
//!
//! - A rating `r` on the 1..=5 scale maps to `(r - 3) / 2`, so 1 star is -1, 3 is 0 and 5 is +1.
//! - A text's sentiment is its VADER compound score, already in [-1, 1] (the caller scores the
//!   text; this crate does not depend on a sentiment model).
//! - When both are present the interaction's sentiment is their mean: the rating says how the
//!   customer scored the product, the text how strongly they felt, and neither is more
//!   trustworthy in general.

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
}
