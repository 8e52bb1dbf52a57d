//! Rotary position embedding of one head vector.

/// Rotates the first `2 · cos.len()` values of `x` by the angles whose cosines and sines are
/// given; pairs are (i, i + half) for HF's rotate_half, or (2i, 2i + 1) when `interleave`.
pub fn rotate(x: &[f32], cos: &[f32], sin: &[f32], interleave: bool) -> Vec<f32> {
    let half = cos.len();
    let mut out = x.to_vec();
    for j in 0..half {
        let (a, b) = if interleave {
            (2 * j, 2 * j + 1)
        } else {
            (j, j + half)
        };
        let (c, s) = (cos[j] as f64, sin[j] as f64);
        let (xa, xb) = (x[a] as f64, x[b] as f64);
        out[a] = (xa * c - xb * s) as f32;
        out[b] = (xb * c + xa * s) as f32;
    }
    out
}
