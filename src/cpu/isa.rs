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

    /// `out[i]` = the f32 of the f16 `halves[i]`, for 32 `halves`.
    fn f16_to_f32(self, halves: &[u16], out: &mut [f32; 32]);
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
    fn f16_to_f32(self, halves: &[u16], out: &mut [f32; 32]) {
        bytemuck::cast_slice::<u16, f16>(halves).convert_to_f32_slice(out);
    }
}

/// AVX2, FMA and F16C, which this CPU has: only [`detect`] makes one.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Isa for Avx2 {
    #[inline(always)]
    fn mul_add(self, acc: f32, a: f32, b: f32) -> f32 {
        // One rounding; a vfmadd where the caller is compiled with FMA.
        a.mul_add(b, acc)
    }

    #[inline(always)]
    fn f16_to_f32(self, halves: &[u16], out: &mut [f32; 32]) {
        use std::arch::x86_64::{_mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
        for (h, o) in halves.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
            // SAFETY: an Avx2 exists only where the CPU has F16C and AVX ([`detect`]); the
            // loads and stores are of 8 values inside the two arrays.
            unsafe {
                let v = _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().cast()));
                _mm256_storeu_ps(o.as_mut_ptr(), v);
            }
        }
    }
}

/// The kernels this CPU runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kernels {
    /// [`Portable`].
    Portable,
    /// [`Avx2`].
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
}

/// The best kernels for this CPU (std caches what the CPU has, so this is cheap to call).
pub(crate) fn detect() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        return Kernels::Avx2(Avx2(()));
    }
    Kernels::Portable
}
