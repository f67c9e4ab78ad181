//! Exact samplers for discrete noise.
//!
//! Canonne, Kamath and Steinke (2020), "The Discrete Gaussian for Differential Privacy",
//! NeurIPS 2020, arXiv:2004.00010, Section 5: Algorithm 1 (Bernoulli(exp(−γ)) for a rational
//! γ), Algorithm 2 (discrete Laplace) and Algorithm 3 (discrete Gaussian). Every step is
//! integer or rational arithmetic on arbitrary-precision numbers, and every random choice is
//! a uniform integer drawn by rejection from the generator's bytes: the output distribution is
//! exactly the stated one, with no floating-point rounding to leak through (Mironov, "On
//! Significance of the Least Significant Bits for Differential Privacy", CCS 2012).
//!
//! The random source must be a cryptographic generator (`CryptoRng`): the server passes the
//! operating system's (`rand::rngs::OsRng`), tests a seeded `rand_chacha::ChaCha20Rng`.
//! Running time is random (rejection sampling), so these samplers are not constant-time.

use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::{ToPrimitive, Zero};
use rand::{CryptoRng, RngCore};

use crate::rational::Rational;

/// A uniform integer in `[0, bound)` (`bound > 0`), by rejection: draw just enough bytes
/// for `bound − 1`, mask the excess high bits, retry when the value is `≥ bound`. No modulo
/// bias; each try succeeds with probability above 1/2.
pub fn uniform_below(rng: &mut (impl RngCore + CryptoRng), bound: &BigUint) -> BigUint {
    if bound <= &BigUint::from(1u32) {
        return BigUint::zero();
    }
    let bits = (bound - 1u32).bits();
    let bytes = bits.div_ceil(8) as usize;
    let excess = (bytes as u64 * 8 - bits) as u32;
    let mut buf = vec![0u8; bytes];
    loop {
        rng.fill_bytes(&mut buf);
        // Big-endian: the first byte holds the most significant bits.
        buf[0] &= 0xff >> excess;
        let candidate = BigUint::from_bytes_be(&buf);
        if &candidate < bound {
            return candidate;
        }
    }
}

/// Bernoulli(n/d) for `n ≤ d`: true iff a uniform integer below `d` is below `n`. The
/// fraction need not be in lowest terms (no gcd on the hot path).
fn bernoulli_fraction(rng: &mut (impl RngCore + CryptoRng), n: &BigUint, d: &BigUint) -> bool {
    &uniform_below(rng, d) < n
}

/// Bernoulli(exp(−n/d)) for `0 ≤ n/d ≤ 1`: the first half of Algorithm 1 of Canonne, Kamath
/// and Steinke (2020). Draw A_k ~ Bernoulli(γ/k) for k = 1, 2, … until one is false; the
/// answer is whether that k is odd.
fn bernoulli_exp_at_most_one(
    rng: &mut (impl RngCore + CryptoRng),
    n: &BigUint,
    d: &BigUint,
) -> bool {
    let mut k: u64 = 1;
    loop {
        // γ/k = n/(d·k) ≤ 1, exactly.
        let dk = d * k;
        if bernoulli_fraction(rng, n, &dk) {
            k += 1;
        } else {
            return k % 2 == 1;
        }
    }
}

/// Bernoulli(exp(−n/d)) for any `n/d ≥ 0` (`d > 0`, not necessarily in lowest terms).
fn bernoulli_exp_fraction(rng: &mut (impl RngCore + CryptoRng), n: &BigUint, d: &BigUint) -> bool {
    if n <= d {
        return bernoulli_exp_at_most_one(rng, n, d);
    }
    let (whole, rest) = n.div_rem(d);
    let one = BigUint::from(1u32);
    let mut k = BigUint::zero();
    while k < whole {
        if !bernoulli_exp_at_most_one(rng, &one, &one) {
            return false;
        }
        k += 1u32;
    }
    bernoulli_exp_at_most_one(rng, &rest, d)
}

/// A sample of Bernoulli(exp(−γ)) for any rational `γ ≥ 0`: Algorithm 1 of Canonne, Kamath
/// and Steinke (2020), arXiv:2004.00010. For γ > 1 it draws ⌊γ⌋ independent
/// Bernoulli(exp(−1)) and, when all are true, one Bernoulli(exp(−(γ − ⌊γ⌋))). The expected
/// number of uniform draws is below 8 whatever γ: each Bernoulli(exp(−x)), x ≤ 1, takes at
/// most e on average, and the first false Bernoulli(exp(−1)) stops the loop (1.6 of them on
/// average at most).
///
/// `bernoulli_exp(rng, 0)` is always true.
pub fn bernoulli_exp(rng: &mut (impl RngCore + CryptoRng), gamma: &Rational) -> bool {
    bernoulli_exp_fraction(rng, gamma.numer(), gamma.denom())
}

/// The integer as an `i64`, saturating at `i64::MAX` (only reachable for absurd scales).
fn saturate(magnitude: &BigUint, negative: bool) -> i64 {
    let m = magnitude.to_i64().unwrap_or(i64::MAX);
    if negative {
        -m
    } else {
        m
    }
}

/// Discrete Laplace as a sign and a magnitude (Algorithm 2 of Canonne, Kamath and Steinke).
///
/// With scale `t/s` (lowest terms): draw U uniform in {0, …, t−1} and accept it with
/// probability exp(−U/t); draw V ~ Geometric(1 − exp(−1)) by counting successes of
/// Bernoulli(exp(−1)); X = U + t·V is then Geometric(1 − exp(−1/t)), and Y = ⌊X/s⌋ is
/// Geometric(1 − exp(−s/t)). A fair sign B is drawn and (B = negative, Y = 0) is rejected so
/// that zero is not counted twice.
fn discrete_laplace_parts(
    rng: &mut (impl RngCore + CryptoRng),
    scale: &Rational,
) -> (BigUint, bool) {
    if scale.is_zero() {
        return (BigUint::zero(), false);
    }
    let t = scale.numer();
    let s = scale.denom();
    let one = BigUint::from(1u32);
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp_at_most_one(rng, &u, t) {
            continue;
        }
        let mut v = BigUint::zero();
        while bernoulli_exp_at_most_one(rng, &one, &one) {
            v += 1u32;
        }
        let x = u + t * v;
        let y = x / s;
        let mut sign = [0u8; 1];
        rng.fill_bytes(&mut sign);
        let negative = sign[0] & 1 == 1;
        if negative && y.is_zero() {
            continue;
        }
        return (y, negative);
    }
}

/// A sample of the discrete Laplace distribution with the given scale `b`:
/// P(x) = (1 − e^(−1/b)) / (1 + e^(−1/b)) · e^(−|x|/b) for every integer x. Algorithm 2 of
/// Canonne, Kamath and Steinke (2020), arXiv:2004.00010, exact for any rational `b`.
///
/// Scale zero gives 0. Values beyond `i64` (only with scales near 10¹⁸) saturate.
pub fn discrete_laplace(rng: &mut (impl RngCore + CryptoRng), scale: &Rational) -> i64 {
    let (magnitude, negative) = discrete_laplace_parts(rng, scale);
    saturate(&magnitude, negative)
}

/// A sample of the discrete Gaussian distribution with the given σ:
/// P(x) ∝ exp(−x²/(2σ²)) for every integer x. Algorithm 3 of Canonne, Kamath and Steinke
/// (2020), arXiv:2004.00010: with t = ⌊σ⌋ + 1, draw Y from the discrete Laplace of scale t
/// and accept it with probability exp(−(|Y| − σ²/t)² / (2σ²)), all in exact rationals.
/// The expected number of tries is a small constant (their Section 5).
///
/// σ = 0 gives 0. Values beyond `i64` saturate.
pub fn discrete_gaussian(rng: &mut (impl RngCore + CryptoRng), sigma: &Rational) -> i64 {
    if sigma.is_zero() {
        return 0;
    }
    // σ = a/b. With t = ⌊σ⌋ + 1 and a candidate of magnitude m, the acceptance exponent is
    // (m − σ²/t)² / (2σ²) = (m·b²·t − a²)² / (2·a²·b²·t²): kept as one unreduced fraction.
    let (a, b) = (sigma.numer(), sigma.denom());
    let t = sigma.floor() + 1u32;
    let t_scale = Rational::from_integer(t.clone());
    let a2 = a * a;
    let b2t = b * b * &t;
    let denom = &a2 * &b2t * &t * 2u32;
    loop {
        let (magnitude, negative) = discrete_laplace_parts(rng, &t_scale);
        let m = &magnitude * &b2t;
        let gap = if m >= a2 { m - &a2 } else { &a2 - m };
        let numer = &gap * &gap;
        if bernoulli_exp_fraction(rng, &numer, &denom) {
            return saturate(&magnitude, negative);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn uniform_below_covers_its_range_evenly() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let bound = BigUint::from(6u32);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            let x = uniform_below(&mut rng, &bound).to_usize().unwrap();
            counts[x] += 1;
        }
        // Each count is Binomial(60000, 1/6): mean 10000, sd 91; 5 sd either side.
        for c in counts {
            assert!((9_545..=10_455).contains(&c), "{counts:?}");
        }
        assert_eq!(
            uniform_below(&mut rng, &BigUint::from(1u32)),
            BigUint::zero()
        );
    }

    #[test]
    fn bernoulli_exp_matches_its_probability() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for (n, d) in [(1u32, 2u32), (1, 1), (5, 2), (0, 1)] {
            let gamma = Rational::new(n, d).unwrap();
            let p = (-(n as f64) / d as f64).exp();
            let trials = 40_000;
            let hits = (0..trials)
                .filter(|_| bernoulli_exp(&mut rng, &gamma))
                .count();
            let sd = (p * (1.0 - p) / trials as f64).sqrt();
            let observed = hits as f64 / trials as f64;
            assert!(
                (observed - p).abs() <= 5.0 * sd + 1e-12,
                "γ = {gamma}: observed {observed}, expected {p}"
            );
        }
    }

    #[test]
    fn zero_scales_give_zero() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        assert_eq!(discrete_laplace(&mut rng, &Rational::zero()), 0);
        assert_eq!(discrete_gaussian(&mut rng, &Rational::zero()), 0);
    }

    #[test]
    fn same_seed_same_samples() {
        let scale = Rational::new(7u32, 2u32).unwrap();
        let draw = |seed| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            (0..20)
                .map(|_| discrete_gaussian(&mut rng, &scale))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        assert_ne!(draw(9), draw(10));
    }
}
