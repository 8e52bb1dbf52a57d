//! Which kernels this CPU runs ([`Kernels`]), detected at run time: AVX2 with FMA and F16C on
//! x86-64 CPUs that have them, the portable code elsewhere (see [`isa`](super::isa)).

#[cfg(target_arch = "x86_64")]
use crate::cpu::avx2::Avx2;

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
        return Kernels::Avx2(Avx2::new());
    }
    Kernels::Portable
}
