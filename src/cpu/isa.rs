//! The instruction sets the CPU kernels are compiled for, picked at run time: AVX2 with FMA and
//! F16C on x86-64 CPUs that have them, portable code (SSE2 on x86-64, NEON on aarch64)
//! elsewhere. A kernel is written once, generic over [`Isa`], and compiled for each.
//!
//! The AVX2 kernels multiply-add with one rounding (FMA), the portable ones with two, so their
//! bits differ; a machine always picks the same one, so its results do not change from run to
//! run or with the number of threads.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// The operations whose code depends on the instruction set.
pub(crate) trait Isa: Copy {
    /// `acc + a · b`.
    fn mul_add(self, acc: f32, a: f32, b: f32) -> f32;

    /// `sums[i]` = [`mul_add`](Self::mul_add)`(sums[i], a[i], b[i])`.
    fn mul_add16(self, sums: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16]);

    /// `out[i]` = the f32 of the f16 `halves[i]`, for 32 `halves`.
    fn f16_to_f32(self, halves: &[u16], out: &mut [f32; 32]);

    /// The 32 nibbles of `bytes` (the low one of a byte first), each looked up in `table`.
    fn nibbles(self, bytes: &[u8; 16], table: &[i8; 16]) -> [i8; 32];

    /// `out[i]` = `q[i] · scale - offset`: a multiply, then a subtraction.
    fn scaled(self, q: &[i8; 16], scale: f32, offset: f32, out: &mut [f32; 16]);
}

/// Portable code: a multiply then an add, f16 converted by `half`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

impl Isa for Portable {
    #[inline(always)]
    fn mul_add(self, acc: f32, a: f32, b: f32) -> f32 {
        acc + a * b
    }

    #[inline(always)]
    fn mul_add16(self, sums: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16]) {
        for ((s, a), b) in sums.iter_mut().zip(a).zip(b) {
            *s += a * b;
        }
    }

    #[inline(always)]
    fn f16_to_f32(self, halves: &[u16], out: &mut [f32; 32]) {
        bytemuck::cast_slice::<u16, f16>(halves).convert_to_f32_slice(out);
    }

    #[inline(always)]
    fn nibbles(self, bytes: &[u8; 16], table: &[i8; 16]) -> [i8; 32] {
        std::array::from_fn(|i| table[usize::from((bytes[i / 2] >> (4 * (i % 2))) & 15)])
    }

    #[inline(always)]
    fn scaled(self, q: &[i8; 16], scale: f32, offset: f32, out: &mut [f32; 16]) {
        for (o, q) in out.iter_mut().zip(q) {
            *o = f32::from(*q) * scale - offset;
        }
    }
}
