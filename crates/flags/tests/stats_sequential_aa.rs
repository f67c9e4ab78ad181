//! A/A simulation of the mSPRT with repeated looks: its false-positive rate stays at or
//! below alpha, while naive peeking with a fixed-horizon z-test does not.

use flags::stats::{dist, RunningSummary, SequentialTest, Summary};

const SEED: u64 = 0x5EED_0005;
const EXPERIMENTS: usize = 1_000;
const LOOKS: usize = 20;
const USERS_PER_LOOK: usize = 100;
const ALPHA: f64 = 0.05;
/// Three binomial standard errors of a rate of alpha over `EXPERIMENTS` runs (~0.021).
fn monte_carlo_margin() -> f64 {
    3.0 * (ALPHA * (1.0 - ALPHA) / EXPERIMENTS as f64).sqrt()
}

/// SplitMix64: small, seedable, good enough for a Monte Carlo check.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal by Box-Muller (one of the pair is enough here).
    fn normal(&mut self) -> f64 {
        let r = (-2.0 * self.uniform().ln()).sqrt();
        r * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
}

struct Outcome {
    msprt_rejections: usize,
    naive_rejections: usize,
}

/// Runs `EXPERIMENTS` experiments with a true difference `effect` (in standard deviations),
/// looking after every batch; counts experiments ever rejected by each procedure.
fn simulate(seed: u64, effect: f64, tau_squared: f64) -> Outcome {
    let mut rng = SplitMix64(seed);
    let z_critical = dist::normal_ppf(1.0 - ALPHA / 2.0);
    let mut outcome = Outcome {
        msprt_rejections: 0,
        naive_rejections: 0,
    };
    for _ in 0..EXPERIMENTS {
        let mut treatment = RunningSummary::default();
        let mut control = RunningSummary::default();
        let mut test = SequentialTest::new(tau_squared).unwrap();
        let mut naive_rejected = false;
        for _ in 0..LOOKS {
            for _ in 0..USERS_PER_LOOK {
                treatment.push(effect + rng.normal());
                control.push(rng.normal());
            }
            let t: Summary = treatment.summary().unwrap();
            let c: Summary = control.summary().unwrap();
            test.look(&t, &c).unwrap();
            let z = (t.mean - c.mean) / (t.variance / t.n as f64 + c.variance / c.n as f64).sqrt();
            naive_rejected |= z.abs() > z_critical;
        }
        outcome.msprt_rejections += usize::from(test.rejects(ALPHA));
        outcome.naive_rejections += usize::from(naive_rejected);
    }
    outcome
}

#[test]
fn msprt_false_positive_rate_under_aa_stays_at_or_below_alpha() {
    let outcome = simulate(SEED, 0.0, 0.01);
    let msprt_rate = outcome.msprt_rejections as f64 / EXPERIMENTS as f64;
    let naive_rate = outcome.naive_rejections as f64 / EXPERIMENTS as f64;
    println!(
        "A/A, seed {SEED:#x}, {EXPERIMENTS} experiments x {LOOKS} looks x {USERS_PER_LOOK} users/arm/look: \
         mSPRT false-positive rate {msprt_rate:.4} (alpha {ALPHA}, margin {:.4}); \
         naive peeking z-test {naive_rate:.4}",
        monte_carlo_margin()
    );
    assert!(msprt_rate <= ALPHA + monte_carlo_margin());
    // The harness detects peeking inflation, so a broken sequential test would show.
    assert!(naive_rate > ALPHA + monte_carlo_margin());
}

#[test]
fn msprt_detects_a_real_effect() {
    // 0.2 sd is well within reach of 2,000 users per arm.
    let outcome = simulate(SEED ^ 1, 0.2, 0.01);
    let power = outcome.msprt_rejections as f64 / EXPERIMENTS as f64;
    println!("effect 0.2 sd: mSPRT rejection rate {power:.4}");
    assert!(power > 0.8);
}
