//! A small BG/NBD + Gamma-Gamma simulator for the tests (independent of the crate's own
//! `simulate` module, so the tests check the fits against a second implementation).
#![allow(dead_code)]

use lifetime::CustomerSummary;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};

/// Population parameters of the simulation (alpha and v as rates, like the models).
#[derive(Debug, Clone, Copy)]
pub struct Population {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

pub const TYPICAL: Population = Population {
    r: 0.5,
    alpha: 20.0,
    a: 1.2,
    b: 3.5,
    p: 5.0,
    q: 4.0,
    v: 40.0,
};

/// `n` customers observed for T uniform in [t_min, t_max] periods after their first purchase.
pub fn simulate(
    pop: &Population,
    n: usize,
    t_min: f64,
    t_max: f64,
    seed: u64,
) -> Vec<CustomerSummary> {
    let mut rng = StdRng::seed_from_u64(seed);
    let lambda = Gamma::new(pop.r, 1.0 / pop.alpha).unwrap();
    let dropout = Beta::new(pop.a, pop.b).unwrap();
    let nu = Gamma::new(pop.q, 1.0 / pop.v).unwrap();
    (0..n)
        .map(|i| {
            let t = rng.gen_range(t_min..=t_max).floor();
            let l = lambda.sample(&mut rng).max(1e-12);
            let p = dropout.sample(&mut rng);
            let scale = 1.0 / nu.sample(&mut rng).max(1e-12);
            let spend = Gamma::new(pop.p, scale).unwrap();
            let gap = Exp::new(l).unwrap();
            let (mut now, mut x, mut tx, mut total) = (0.0, 0u32, 0.0, 0.0);
            loop {
                now += gap.sample(&mut rng);
                if now > t {
                    break;
                }
                x += 1;
                tx = now;
                total += spend.sample(&mut rng);
                if rng.gen::<f64>() < p {
                    break;
                }
            }
            CustomerSummary {
                customer_id: format!("s{i}"),
                frequency: f64::from(x),
                recency: tx,
                t,
                monetary_value: if x > 0 { total / f64::from(x) } else { 0.0 },
            }
        })
        .collect()
}
