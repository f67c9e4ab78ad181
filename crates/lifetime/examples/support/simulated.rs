//! Simulated customer summaries for the speed benchmark and the comparison with lifetimes:
//! a BG/NBD purchase process with Gamma-Gamma spend, ages of 30 to 730 days, whole days (as
//! summaries of real logs are).

use lifetime::CustomerSummary;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};

/// `n` customers from a fixed population (r 0.5, alpha 20 days, a 1.2, b 3.5; p 5, q 4, v 40).
pub fn simulated_summaries(n: usize, seed: u64) -> Vec<CustomerSummary> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (Ok(lambda), Ok(dropout), Ok(nu)) = (
        Gamma::new(0.5, 1.0 / 20.0),
        Beta::new(1.2, 3.5),
        Gamma::new(4.0, 1.0 / 40.0),
    ) else {
        return Vec::new();
    };
    (0..n)
        .map(|i| {
            let t = f64::from(rng.gen_range(30u32..=730));
            let l: f64 = lambda.sample(&mut rng);
            let p: f64 = dropout.sample(&mut rng);
            let nu_i: f64 = nu.sample(&mut rng);
            let scale = 1.0 / nu_i.max(1e-9);
            let (mut now, mut x, mut tx, mut total) = (0.0f64, 0u32, 0.0f64, 0.0f64);
            if let (Ok(gap), Ok(spend)) = (Exp::new(l.max(1e-9)), Gamma::new(5.0, scale)) {
                let mut last_day = 0.0;
                loop {
                    now += gap.sample(&mut rng);
                    if now > t {
                        break;
                    }
                    let day = now.floor();
                    total += spend.sample(&mut rng);
                    // Purchases on the same day merge, as in a summary.
                    if day > last_day {
                        x += 1;
                        tx = day;
                        last_day = day;
                    }
                    if rng.gen::<f64>() < p {
                        break;
                    }
                }
            }
            CustomerSummary {
                customer_id: format!("s{i}"),
                frequency: f64::from(x),
                recency: tx,
                t,
                monetary_value: if x > 0 {
                    (total / f64::from(x + 1)).max(0.01)
                } else {
                    0.0
                },
            }
        })
        .collect()
}
