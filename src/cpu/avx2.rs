//! [`Isa`] in AVX2, FMA and F16C intrinsics, for x86-64 CPUs that have them.

use std::arch::x86_64::{
    _mm_and_si128, _mm_loadl_epi64, _mm_loadu_si128, _mm_set1_epi8, _mm_shuffle_epi8,
    _mm_srli_epi16, _mm_storeu_si128, _mm_unpackhi_epi8, _mm_unpacklo_epi8, _mm256_cvtepi8_epi32,
    _mm256_cvtepi32_ps, _mm256_cvtph_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_mul_ps,
    _mm256_set1_ps, _mm256_storeu_ps, _mm256_sub_ps,
};

use crate::cpu::isa::Isa;

/// AVX2, FMA and F16C, which this CPU has: only [`detect`](super::dispatch::detect) makes one, so
/// that holding one proves the intrinsics below may run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// The proof; only for [`detect`](super::dispatch::detect), after it checked the CPU.
    pub(super) fn new() -> Self {
        Self(())
    }
}

// SAFETY (every block below): an Avx2 exists only where the CPU has AVX2, FMA and F16C, and
// every load and store is of whole vectors inside the arrays named.
impl Isa for Avx2 {
    #[inline(always)]
    fn mul_add(self, acc: f32, a: f32, b: f32) -> f32 {
        // One rounding, as in `mul_add16`: a vfmadd where the caller is compiled with FMA.
        a.mul_add(b, acc)
    }

    #[inline(always)]
    fn mul_add16(self, sums: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16]) {
        for h in [0, 8] {
            unsafe {
                let s = sums.as_mut_ptr().add(h);
                let (a, b) = (
                    _mm256_loadu_ps(a.as_ptr().add(h)),
                    _mm256_loadu_ps(b.as_ptr().add(h)),
                );
                _mm256_storeu_ps(s, _mm256_fmadd_ps(a, b, _mm256_loadu_ps(s)));
            }
        }
    }

    #[inline(always)]
    fn f16_to_f32(self, halves: &[u16], out: &mut [f32; 32]) {
        for (h, o) in halves.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
            unsafe {
                let v = _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().cast()));
                _mm256_storeu_ps(o.as_mut_ptr(), v);
            }
        }
    }

    #[inline(always)]
    fn nibbles(self, bytes: &[u8; 16], table: &[i8; 16]) -> [i8; 32] {
        let mut out = [0i8; 32];
        unsafe {
            let (b, t) = (
                _mm_loadu_si128(bytes.as_ptr().cast()),
                _mm_loadu_si128(table.as_ptr().cast()),
            );
            let low = _mm_shuffle_epi8(t, _mm_and_si128(b, _mm_set1_epi8(15)));
            let high = _mm_shuffle_epi8(t, _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(15)));
            _mm_storeu_si128(out.as_mut_ptr().cast(), _mm_unpacklo_epi8(low, high));
            _mm_storeu_si128(
                out.as_mut_ptr().add(16).cast(),
                _mm_unpackhi_epi8(low, high),
            );
        }
        out
    }

    #[inline(always)]
    fn scaled(self, q: &[i8; 16], scale: f32, offset: f32, out: &mut [f32; 16]) {
        for h in [0, 8] {
            unsafe {
                let q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                    q.as_ptr().add(h).cast(),
                )));
                let v = _mm256_sub_ps(
                    _mm256_mul_ps(q, _mm256_set1_ps(scale)),
                    _mm256_set1_ps(offset),
                );
                _mm256_storeu_ps(out.as_mut_ptr().add(h), v);
            }
        }
    }
}
