//! Damped normal equations of recovery's least-squares fits: a symmetric positive-definite
//! matrix, factored once by Cholesky and solved for several right-hand sides.

use crate::error::{Error, Result};

/// The Cholesky factor of `A + λI` (Levenberg's damping: it keeps a step small along directions
/// the calibration tokens barely constrain).
pub struct Normal {
    n: usize,
    /// The damping λ added to the diagonal.
    pub lambda: f64,
    /// Lower triangle, row-major [n, n].
    l: Vec<f64>,
}

impl Normal {
    /// Factors `a` ([n, n], symmetric; only its lower triangle is read) plus `lambda` I.
    pub fn factor(mut a: Vec<f64>, n: usize, lambda: f64) -> Result<Self> {
        let lambda = lambda + 1e-12;
        for i in 0..n {
            a[i * n + i] += lambda;
        }
        for i in 0..n {
            for j in 0..=i {
                let s = a[i * n + j] - (0..j).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>();
                if i == j {
                    if !(s > 0.0 && s.is_finite()) {
                        return Err(Error::input(format!(
                            "recovery's normal equations are not positive definite at row {i} \
                             (pivot {s:e}); the calibration activations hold a NaN or overflow"
                        )));
                    }
                    a[i * n + i] = s.sqrt();
                } else {
                    a[i * n + j] = s / a[j * n + j];
                }
            }
        }
        Ok(Self { n, lambda, l: a })
    }

    /// Solves (A + λI) x = b, overwriting `b` with x.
    pub fn solve(&self, b: &mut [f64]) {
        let (n, l) = (self.n, &self.l);
        for i in 0..n {
            let s = b[i] - (0..i).map(|k| l[i * n + k] * b[k]).sum::<f64>();
            b[i] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let s = b[i] - (i + 1..n).map(|k| l[k * n + i] * b[k]).sum::<f64>();
            b[i] = s / l[i * n + i];
        }
    }
}

/// The mean of the diagonal of `a` ([n, n]).
pub fn mean_diagonal(a: &[f64], n: usize) -> f64 {
    (0..n).map(|i| a[i * n + i]).sum::<f64>() / n.max(1) as f64
}

/// a += c · x xᵀ on the lower triangle of `a` ([n, n]).
pub fn add_outer(a: &mut [f64], x: &[f32], c: f64) {
    let n = x.len();
    for i in 0..n {
        let ci = c * x[i] as f64;
        let row = &mut a[i * n..i * n + i + 1];
        for (r, xj) in row.iter_mut().zip(&x[..=i]) {
            *r += ci * *xj as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_small_system_and_refuses_a_nan() {
        // A = [[4, 2], [2, 3]], b = A · [1, -2] = [0, -4].
        let a = vec![4.0, 0.0, 2.0, 3.0];
        let m = Normal::factor(a, 2, 0.0).unwrap();
        let mut b = vec![0.0, -4.0];
        m.solve(&mut b);
        assert!(
            (b[0] - 1.0).abs() < 1e-9 && (b[1] + 2.0).abs() < 1e-9,
            "{b:?}"
        );
        let mut outer = vec![0.0; 4];
        add_outer(&mut outer, &[1.0, 2.0], 2.0);
        assert_eq!(outer, vec![2.0, 0.0, 4.0, 8.0]);
        assert!(Normal::factor(vec![f64::NAN, 0.0, 0.0, 1.0], 2, 0.0).is_err());
    }
}
