//! The f32 dot product of the CPU kernels, in an order the compiler vectorises and that does
//! not depend on anything but the lengths.

/// Independent accumulators: two AVX or four SSE registers of products in flight.
const LANES: usize = 16;

/// Σ a[i] · b[i] of two slices of one length: `LANES` running sums over whole chunks, the
/// tail summed alone, then the sums added pairwise in a fixed tree.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a, b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a
        .remainder()
        .iter()
        .zip(b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; LANES];
    for (x, y) in a.zip(b) {
        for ((sum, x), y) in acc.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    let mut width = LANES / 2;
    while width > 0 {
        let (low, high) = acc.split_at_mut(width);
        for (sum, other) in low.iter_mut().zip(&high[..width]) {
            *sum += other;
        }
        width /= 2;
    }
    acc[0] + tail
}

#[cfg(test)]
mod tests {
    use super::dot;

    #[test]
    fn sums_every_product_of_whole_chunks_and_the_tail() {
        for n in [0, 1, 15, 16, 17, 40, 100] {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 3) as f32 - 1.0).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot(&a, &b), want, "n {n}");
        }
    }
}
