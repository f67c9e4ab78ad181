//! Maximum-likelihood machinery shared by the fits: L-BFGS (argmin, More-Thuente line search)
//! on log-parameters, a few Newton steps to polish the optimum, and the numeric Hessian of an
//! analytic gradient for the observed information.

use std::cell::RefCell;

use argmin::core::{
    CostFunction, Error as ArgminError, Executor, Gradient, TerminationReason, TerminationStatus,
};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use crate::error::{FitError, FitOptions};

/// Log-parameters are clamped here before exponentiating so a wild line-search probe yields a
/// large finite cost instead of an overflow (e^40 ≈ 2e17); a fit ending near the clamp is
/// reported as degenerate.
pub(crate) const LOG_PARAM_BOUND: f64 = 40.0;

/// A fit's parameters are called degenerate beyond e^±30 (≈ 1e±13).
pub(crate) const LOG_PARAM_DEGENERATE: f64 = 30.0;

/// Result of a minimisation.
pub(crate) struct Minimum {
    pub x: Vec<f64>,
    #[allow(dead_code)] // kept for diagnostics in tests
    pub cost: f64,
    pub iterations: u64,
}

struct Problem<'f, F> {
    f: &'f F,
    /// (x, cost, grad) of the last evaluation: argmin asks for the cost and the gradient at the
    /// same point separately, and one pass computes both.
    last: RefCell<Option<(Vec<f64>, f64, Vec<f64>)>>,
    /// Lowest finite cost seen, so a line-search failure near the optimum loses nothing.
    best: RefCell<Option<(Vec<f64>, f64)>>,
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Problem<'_, F> {
    fn eval(&self, x: &[f64]) -> (f64, Vec<f64>) {
        if let Some((lx, c, g)) = self.last.borrow().as_ref() {
            if lx.as_slice() == x {
                return (*c, g.clone());
            }
        }
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
/// L-BFGS first; then up to 8 Newton steps with the numeric Hessian (cheap for 3-4
/// parameters) which take the gradient from ~1e-8 to rounding level, so our optimum does not
/// depend on where a quasi-Newton method happened to stop. Converged means the largest
/// gradient component is below `max(100 * tolerance, 1e-6)`.
pub(crate) fn minimize<F>(f: &F, x0: Vec<f64>, options: &FitOptions) -> Result<Minimum, FitError>
where
    F: Fn(&[f64]) -> (f64, Vec<f64>),
{
    let problem = Problem {
        f,
        last: RefCell::new(None),
        best: RefCell::new(None),
    };
    let linesearch = MoreThuenteLineSearch::new();
    let solver = LBFGS::new(linesearch, 10)
        .with_tolerance_grad(options.tolerance)
        .and_then(|s| s.with_tolerance_cost(0.0))
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
    let threshold = (100.0 * options.tolerance).max(1e-6);
    let (mut cost, mut grad) = problem.eval(&x);
    if hit_limit && max_abs(&grad) > threshold {
        return Err(FitError::DidNotConverge { iterations });
    }
    for _ in 0..8 {
        if max_abs(&grad) <= 1e-12 {
            break;
        }
        let hessian = numeric_hessian(&|p: &[f64]| problem.eval(p).1, &x, 1e-5, 1.0);
        let Some(step) = solve_spd(&hessian, &grad) else {
            break;
        };
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..20 {
            let candidate: Vec<f64> = x.iter().zip(&step).map(|(xi, si)| xi - t * si).collect();
            let (c, g) = problem.eval(&candidate);
            if c <= cost && max_abs(&g) < max_abs(&grad) {
                x = candidate;
                cost = c;
                grad = g;
                improved = true;
                break;
            }
            t *= 0.5;
        }
        iterations += 1;
        if !improved {
            break;
        }
    }
    if max_abs(&grad) > threshold || !cost.is_finite() {
        return Err(FitError::DidNotConverge { iterations });
    }
    Ok(Minimum {
        x,
        cost,
        iterations,
    })
}

/// Central-difference Jacobian of `grad` at `x`, symmetrised. The step of coordinate `j` is
/// `h * max(|x_j|, floor)` (`floor = 0`: purely relative, for positive parameters).
pub(crate) fn numeric_hessian<G>(grad: &G, x: &[f64], h: f64, floor: f64) -> Vec<Vec<f64>>
where
    G: Fn(&[f64]) -> Vec<f64>,
{
    let n = x.len();
    let mut hess = vec![vec![0.0; n]; n];
    for j in 0..n {
        let step = h * x[j].abs().max(floor).max(1e-300);
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
        let m = minimize(&f, vec![0.0, 0.0], &FitOptions::default()).unwrap();
        assert!((m.x[0] - 1.0).abs() < 1e-9 && (m.x[1] + 2.0).abs() < 1e-9);
    }

    #[test]
    fn inverts_spd() {
        let a = vec![vec![4.0, 1.0], vec![1.0, 3.0]];
        let inv = invert_spd(&a).unwrap();
        assert!((inv[0][0] - 3.0 / 11.0).abs() < 1e-14);
        assert!(invert_spd(&[vec![1.0, 2.0], vec![2.0, 1.0]]).is_none());
    }
}
