//! RMSNorm, as HF's `*RMSNorm.forward` in f32 models: w · x / sqrt(mean(x²) + eps).

/// Normalises each `width`-wide row of `x` with gain `weight`, in f64.
pub fn rms_norm(x: &[f32], width: usize, weight: &[f32], eps: f32) -> Vec<f32> {
    x.chunks(width)
        .flat_map(|row| {
            let mean_sq = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / width as f64;
            let inv = 1.0 / (mean_sq + eps as f64).sqrt();
            row.iter()
                .zip(weight)
                .map(move |(v, w)| (*w as f64 * *v as f64 * inv) as f32)
        })
        .collect()
}
