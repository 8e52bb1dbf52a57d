//! Fast deterministic tensor data. Each tensor has its own stream (seeded by the checkpoint
//! seed and its name, so it does not depend on the order tensors are written in), and normal
//! values come from a 65 536-entry quantile table of N(0, std²) already in the output dtype:
//! one 64-bit draw gives four values, fast enough to write gigabytes a second.

use half::bf16;
use safetensors::Dtype;

use crate::error::{Error, Result};
use crate::model::synth::tensors::{Init, TensorPlan};
use crate::synthetic::Rng;

/// Elements generated per chunk handed to the writer (a multiple of 4).
const CHUNK: usize = 1 << 20;

/// The standard normal quantile Φ⁻¹(p) for p in (0, 1) (Acklam's rational approximation,
/// relative error below 1.2·10⁻⁹).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const LOW: f64 = 0.02425;
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// 64-bit FNV-1a of `name`, mixed with `seed`: the tensor's own stream.
fn stream(seed: u64, name: &str) -> Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    Rng::new(h ^ seed.rotate_left(17))
}

/// The 2¹⁶ quantiles of N(0, std²) at the midpoints of equal-probability bins, encoded as
/// `dtype` little-endian bytes.
fn normal_table(std: f32, dtype: Dtype) -> Result<Vec<u8>> {
    let n = 1usize << 16;
    let values = (0..n).map(|i| std as f64 * normal_quantile((i as f64 + 0.5) / n as f64));
    encode(values, dtype)
}

fn encode(values: impl Iterator<Item = f64>, dtype: Dtype) -> Result<Vec<u8>> {
    match dtype {
        Dtype::BF16 => Ok(values
            .flat_map(|v| bf16::from_f64(v).to_le_bytes())
            .collect()),
        Dtype::F32 => Ok(values.flat_map(|v| (v as f32).to_le_bytes()).collect()),
        other => Err(Error::input(format!(
            "synthetic values in {other:?} are not supported (bf16, f32)"
        ))),
    }
}

/// Generates the data of `t` (stream seeded by `seed` and its name) in order, handing it to
/// `emit` a chunk at a time: memory stays at one chunk however large the tensor is.
pub fn generate(
    t: &TensorPlan,
    seed: u64,
    mut emit: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut rng = stream(seed, &t.name);
    let total = t.elements() as usize;
    let size = t.dtype.bitsize() / 8;
    let table = match t.init {
        Init::Normal(std) => normal_table(std, t.dtype)?,
        Init::Const(c) => encode(std::iter::once(c as f64), t.dtype)?,
        Init::Mxfp4Blocks | Init::Mxfp4Scales => Vec::new(),
    };
    // 2-byte values are looked up as u16 (their bytes already little-endian): several times
    // faster than copying byte slices.
    let table16: Vec<u16> = match (t.init, size) {
        (Init::Normal(_), 2) => table
            .chunks_exact(2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .collect(),
        _ => Vec::new(),
    };
    // u64 words, so that the bytes can be viewed as aligned u16.
    let mut buf = vec![0u64; (CHUNK.min(total.next_multiple_of(4)) * size).div_ceil(8)];
    let mut done = 0;
    while done < total {
        let n = CHUNK.min(total - done);
        let out =
            &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..n.next_multiple_of(4) * size];
        match t.init {
            Init::Normal(_) if size == 2 => {
                let words: &mut [u16] = bytemuck::cast_slice_mut(out);
                for quad in words.chunks_exact_mut(4) {
                    let r = rng.next_u64();
                    for (j, v) in quad.iter_mut().enumerate() {
                        *v = table16[((r >> (16 * j)) & 0xffff) as usize];
                    }
                }
            }
            Init::Normal(_) => {
                for quad in out.chunks_exact_mut(4 * size) {
                    let r = rng.next_u64();
                    for (j, v) in quad.chunks_exact_mut(size).enumerate() {
                        let at = ((r >> (16 * j)) & 0xffff) as usize * size;
                        v.copy_from_slice(&table[at..at + size]);
                    }
                }
            }
            Init::Const(_) => {
                for v in out.chunks_exact_mut(size) {
                    v.copy_from_slice(&table);
                }
            }
            Init::Mxfp4Blocks => {
                for word in out.chunks_mut(8) {
                    let r = rng.next_u64().to_le_bytes();
                    word.copy_from_slice(&r[..word.len()]);
                }
            }
            // 2^(s − 127) for s in 119..=121: exponents −8, −7 and −6.
            Init::Mxfp4Scales => {
                for word in out.chunks_mut(8) {
                    let r = rng.next_u64().to_le_bytes();
                    for (v, b) in word.iter_mut().zip(r) {
                        *v = 119 + b % 3;
                    }
                }
            }
        }
        emit(&out[..n * size])?;
        done += n;
    }
    Ok(())
}

/// The values of `t` as f32 (MXFP4 blocks and scales as their raw bytes), for checks such as
/// how peaked a router is.
pub fn values_f32(t: &TensorPlan, seed: u64) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(t.elements() as usize);
    generate(t, seed, |bytes| {
        match t.dtype {
            Dtype::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            Dtype::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            _ => out.extend(bytes.iter().map(|b| *b as f32)),
        }
        Ok(())
    })?;
    Ok(out)
}
