//! Maximum-likelihood machinery shared by the fits: L-BFGS (argmin, More-Thuente line search)
//! on log-parameters, a few Newton steps to polish the optimum, and the numeric Hessian of an
//! analytic gradient for the observed information.

// Index loops read closest to the formulas in this small-matrix code.
#![allow(clippy::needless_range_loop)]

use std::cell::RefCell;

use argmin::core::{
    CostFunction, Error as ArgminError, Executor, Gradient, TerminationReason, TerminationStatus,
};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use crate::error::{FitError, FitOptions};

/// A fit that stops without converging with a log-parameter beyond this (e^±15 ≈ 3e6 or 3e-7
/// in scaled units) is running to a bound: degenerate rather than merely slow.
pub(crate) const LOG_PARAM_RUNAWAY: f64 = 15.0;

/// Checks where an optimiser left log-parameters `x` (already shifted to scaled units): a
/// parameter beyond the bounds makes the fit degenerate; otherwise a non-converged run is
/// `DidNotConverge`.
pub(crate) fn check_outcome(
    model: &str,
    names: &[&str],
    scaled: &[f64],
    m: &Minimum,
) -> Result<(), FitError> {
    let bound = if m.converged {
        LOG_PARAM_DEGENERATE
    } else {
        LOG_PARAM_RUNAWAY
    };
    let runaway: Vec<String> = names
        .iter()
        .zip(scaled)
        .filter(|(_, v)| v.abs() > bound)
        .map(|(n, v)| format!("{n} runs to {}", if *v > 0.0 { "infinity" } else { "zero" }))
        .collect();
    if !runaway.is_empty() {
        return Err(FitError::Degenerate {
            reason: format!("{model} has no interior maximum: {}", runaway.join(", ")),
        });
    }
    if !m.converged {
        return Err(FitError::DidNotConverge {
            iterations: m.iterations,
        });
    }
    Ok(())
}

/// Log-parameters are clamped here before exponentiating so a wild line-search probe yields a
/// large finite cost instead of an overflow (e^40 ≈ 2e17); a fit ending near the clamp is
/// reported as degenerate.
pub(crate) const LOG_PARAM_BOUND: f64 = 40.0;

/// A fit's parameters are called degenerate beyond e^±30 (≈ 1e±13).
pub(crate) const LOG_PARAM_DEGENERATE: f64 = 30.0;

/// An analytic Hessian of the cost at a point, given the cost's gradient there.
pub(crate) type HessianFn<'h> = dyn Fn(&[f64], &[f64]) -> Vec<Vec<f64>> + 'h;

/// Result of a minimisation.
pub(crate) struct Minimum {
    pub x: Vec<f64>,
    #[allow(dead_code)] // kept for diagnostics in tests
    pub cost: f64,
    pub iterations: u64,
    /// Whether the gradient vanished (see [`minimize`]); callers decide between
    /// `DidNotConverge` and `Degenerate` from where the parameters went.
    pub converged: bool,
}

/// A point with its cost and gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

struct Problem<'f, F> {
    f: &'f F,
    /// (x, cost, grad) of the last evaluation: argmin asks for the cost and the gradient at the
    /// same point separately, and one pass computes both.
    last: RefCell<Option<Evaluation>>,
    /// Lowest finite cost seen, so a line-search failure near the optimum loses nothing.
    best: RefCell<Option<(Vec<f64>, f64)>>,
    evaluations: std::cell::Cell<u64>,
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Problem<'_, F> {
    fn eval(&self, x: &[f64]) -> (f64, Vec<f64>) {
        if let Some((lx, c, g)) = self.last.borrow().as_ref() {
            if lx.as_slice() == x {
                return (*c, g.clone());
            }
        }
        self.evaluations.set(self.evaluations.get() + 1);
        let (c, g) = (self.f)(x);
        // A non-finite cost would poison the line search's interpolation: report a huge one.
        let (c, g) = if c.is_finite() && g.iter().all(|v| v.is_finite()) {
            (c, g)
        } else {
            (f64::MAX / 4.0, vec![0.0; x.len()])
        };
        let better = match self.best.borrow().as_ref() {
            Some((_, bc)) => c < *bc,
            None => true,
        };
        if better {
            *self.best.borrow_mut() = Some((x.to_vec(), c));
        }
        *self.last.borrow_mut() = Some((x.to_vec(), c, g.clone()));
        (c, g)
    }
}

/// What argmin owns: a reference, so the cache stays readable after the run.
struct Handle<'p, 'f, F>(&'p Problem<'f, F>);

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> CostFunction for Handle<'_, '_, F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Self::Param) -> Result<f64, ArgminError> {
        Ok(self.0.eval(x).0)
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Gradient for Handle<'_, '_, F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Self::Param) -> Result<Vec<f64>, ArgminError> {
        Ok(self.0.eval(x).1)
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Minimises `f` (returning cost and gradient) from `x0`.
///
/// L-BFGS first (stopping at `tolerance` on the gradient's L2 norm or when the cost changes by
/// less than 1e-11); then, if the largest gradient component is still above `100 * tolerance`,
/// up to 4 Newton steps with `hessian` (analytic, or else numeric: cheap for 3-4 parameters), so the optimum
/// does not depend on where the quasi-Newton method happened to stop. Converged means the largest
/// gradient component is below `max(100 * tolerance, 1e-6)`.
///
/// `warm`: `x0` is already close (the optimum of a subsample): try Newton steps from it first
/// and run L-BFGS only if they do not converge.
pub(crate) fn minimize<F>(
    f: &F,
    hessian: Option<&HessianFn<'_>>,
    x0: Vec<f64>,
    warm: bool,
    options: &FitOptions,
) -> Result<Minimum, FitError>
where
    F: Fn(&[f64]) -> (f64, Vec<f64>),
{
    let problem = Problem {
        f,
        last: RefCell::new(None),
        best: RefCell::new(None),
        evaluations: std::cell::Cell::new(0),
    };
    let threshold = (100.0 * options.tolerance).max(1e-6);
    if warm && hessian.is_some() {
        let (mut x, mut iterations) = (x0.clone(), 0);
        let (mut cost, mut grad) = problem.eval(&x);
        newton_steps(
            &problem,
            hessian,
            &mut x,
            &mut cost,
            &mut grad,
            8,
            threshold,
            &mut iterations,
        );
        if max_abs(&grad) <= threshold && cost.is_finite() {
            newton_steps(
                &problem,
                hessian,
                &mut x,
                &mut cost,
                &mut grad,
                2,
                100.0 * options.tolerance,
                &mut iterations,
            );
            return Ok(Minimum {
                x,
                cost,
                iterations,
                converged: true,
            });
        }
    }
    let linesearch = MoreThuenteLineSearch::new();
    let solver = LBFGS::new(linesearch, 10)
        .with_tolerance_grad(options.tolerance)
        // Stop once the mean cost stalls near rounding level: beyond that the line search only
        // chases noise (dozens of evaluations per iteration); the Newton polish finishes.
        .and_then(|s| s.with_tolerance_cost(1e-11))
        .map_err(|e| FitError::InvalidOption {
            field: "tolerance",
            reason: e.to_string(),
        })?;
    let run = Executor::new(Handle(&problem), solver)
        .configure(|state| state.param(x0.clone()).max_iters(options.max_iterations))
        .timer(false)
        .run();
    let (mut x, mut iterations, hit_limit) = match run {
        Ok(result) => {
            let state = result.state();
            let hit = matches!(
                state.termination_status,
                TerminationStatus::Terminated(TerminationReason::MaxItersReached)
            );
            let x = state
                .best_param
                .clone()
                .or_else(|| state.param.clone())
                .unwrap_or_else(|| x0.clone());
            (x, state.iter, hit)
        }
        // Line-search failures happen when the cost can no longer decrease in floating point,
        // i.e. at the optimum: continue from the best point seen and let the gradient decide.
        Err(_) => {
            let x = problem
                .best
                .borrow()
                .as_ref()
                .map(|(x, _)| x.clone())
                .unwrap_or_else(|| x0.clone());
            (x, options.max_iterations.min(1), false)
        }
    };
    let (mut cost, mut grad) = problem.eval(&x);
    if hit_limit && max_abs(&grad) > threshold {
        return Ok(Minimum {
            x,
            cost,
            iterations,
            converged: false,
        });
    }
    // The polish is skipped when L-BFGS already got there (the common case: at 100,000
    // customers the gradient's rounding noise is ~1e-9, below which nothing improves).
    let target = 100.0 * options.tolerance;
    newton_steps(
        &problem,
        hessian,
        &mut x,
        &mut cost,
        &mut grad,
        4,
        target,
        &mut iterations,
    );
    let converged = max_abs(&grad) <= threshold && cost.is_finite();
    Ok(Minimum {
        x,
        cost,
        iterations,
        converged,
    })
}

/// Up to `steps` Newton steps (halving the step up to 5 times until both the cost and the
/// largest gradient component decrease), stopping once the latter is below `target`.
#[allow(clippy::too_many_arguments)]
fn newton_steps<F>(
    problem: &Problem<'_, F>,
    hessian: Option<&HessianFn<'_>>,
    x: &mut Vec<f64>,
    cost: &mut f64,
    grad: &mut Vec<f64>,
    steps: usize,
    target: f64,
    iterations: &mut u64,
) where
    F: Fn(&[f64]) -> (f64, Vec<f64>),
{
    for _ in 0..steps {
        if max_abs(grad) <= target {
            break;
        }
        let h = match hessian {
            Some(analytic) => analytic(x, grad),
            None => numeric_hessian(&|p: &[f64]| problem.eval(p).1, x, 1e-5),
        };
        let Some(step) = solve_spd(&h, grad) else {
            break;
        };
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..6 {
            let candidate: Vec<f64> = x.iter().zip(&step).map(|(xi, si)| xi - t * si).collect();
            let (c, g) = problem.eval(&candidate);
            if c <= *cost && max_abs(&g) < max_abs(grad) {
                *x = candidate;
                *cost = c;
                *grad = g;
                improved = true;
                break;
            }
            t *= 0.5;
        }
        *iterations += 1;
        if !improved {
            break;
        }
    }
}

/// Central-difference Jacobian of `grad` at `x` (log-parameters: step `h * max(|x_j|, 1)`),
/// symmetrised.
pub(crate) fn numeric_hessian<G>(grad: &G, x: &[f64], h: f64) -> Vec<Vec<f64>>
where
    G: Fn(&[f64]) -> Vec<f64>,
{
    let n = x.len();
    let mut hess = vec![vec![0.0; n]; n];
    for j in 0..n {
        let step = h * x[j].abs().max(1.0);
        let mut up = x.to_vec();
        up[j] += step;
        let mut down = x.to_vec();
        down[j] -= step;
        let gu = grad(&up);
        let gd = grad(&down);
        for i in 0..n {
            hess[i][j] = (gu[i] - gd[i]) / (2.0 * step);
        }
    }
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (hess[i][j] + hess[j][i]);
            hess[i][j] = m;
            hess[j][i] = m;
        }
    }
    hess
}

/// Sorts `keys` whose values fit in `bits` bits: LSD radix sort on 11-bit digits (a few
/// linear passes; several times faster than a comparison sort on 100,000 keys).
pub(crate) fn radix_sort(keys: &mut Vec<u64>, bits: u32) {
    const DIGIT: u32 = 11;
    let mut buffer = vec![0u64; keys.len()];
    let mut shift = 0;
    while shift < bits {
        let mut counts = vec![0usize; 1 << DIGIT];
        for &k in keys.iter() {
            counts[((k >> shift) & ((1 << DIGIT) - 1)) as usize] += 1;
        }
        let mut total = 0;
        for c in counts.iter_mut() {
            let here = *c;
            *c = total;
            total += here;
        }
        for &k in keys.iter() {
            let d = ((k >> shift) & ((1 << DIGIT) - 1)) as usize;
            buffer[counts[d]] = k;
            counts[d] += 1;
        }
        std::mem::swap(keys, &mut buffer);
        shift += DIGIT;
    }
}

/// A fast non-cryptographic hasher (the Fx multiply-rotate of rustc) for grouping customers:
/// the keys are our own indices and float bits, so flooding resistance buys nothing and SipHash
/// was a fifth of a 100,000-customer fit.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        // MurmurHash3's finaliser: float keys like 30.0 have all-zero low bits, and so has their
        // product with the multiplier, while hashbrown picks buckets from the low bits.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A `HashMap` with [`FxHasher`].
pub(crate) type FastMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// Cholesky factor of a symmetric matrix, `None` unless positive definite.
fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i][j];
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves `a x = b` for a symmetric positive definite `a`.
pub(crate) fn solve_spd(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let l = cholesky(a)?;
    let n = b.len();
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i][k] * y[k];
        }
        y[i] = s / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k][i] * x[k];
        }
        x[i] = s / l[i][i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Inverse of a symmetric positive definite matrix, `None` unless positive definite.
pub(crate) fn invert_spd(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut inv = vec![vec![0.0; n]; n];
    for j in 0..n {
        let mut e = vec![0.0; n];
        e[j] = 1.0;
        let col = solve_spd(a, &e)?;
        for i in 0..n {
            inv[i][j] = col[i];
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimizes_a_quadratic() {
        let f = |x: &[f64]| {
            let c = (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2);
            (c, vec![2.0 * (x[0] - 1.0), 20.0 * (x[1] + 2.0)])
        };
        let m = minimize(&f, None, vec![0.0, 0.0], false, &FitOptions::default()).unwrap();
        assert!(m.converged);
        assert!((m.x[0] - 1.0).abs() < 1e-9 && (m.x[1] + 2.0).abs() < 1e-9);
    }

    #[test]
    fn radix_sort_sorts() {
        let mut state = 12345u64;
        let mut keys: Vec<u64> = (0..5000)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                state >> 20
            })
            .collect();
        let mut expected = keys.clone();
        expected.sort_unstable();
        radix_sort(&mut keys, 44);
        assert_eq!(keys, expected);
    }

    #[test]
    fn inverts_spd() {
        let a = vec![vec![4.0, 1.0], vec![1.0, 3.0]];
        let inv = invert_spd(&a).unwrap();
        assert!((inv[0][0] - 3.0 / 11.0).abs() < 1e-14);
        assert!(invert_spd(&[vec![1.0, 2.0], vec![2.0, 1.0]]).is_none());
    }
}
