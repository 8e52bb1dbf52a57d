//! How the matmul kernels split work: the kernel variant and its tile shape, both override
//! constants, and the candidates the autotuner chooses from.

use crate::error::{Error, Result};
use crate::gpu::Context;

/// Which matmul kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatmulVariant {
    /// `matmul.wgsl`: accumulators in registers, x and W read straight from storage.
    Registers,
    /// `matmul_tiled.wgsl`: x and W slices staged in workgroup memory.
    SharedTiles,
    /// `matmul_vec.wgsl`: the decode matvec, one row per workgroup and TN ≤ 8 columns per
    /// thread, with no private arrays or per-column branches.
    Vector,
}

/// A matmul variant and its tile: WG_M × WG_N threads, each computing TM rows × TN columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tiling {
    /// Which matmul kernel.
    pub variant: MatmulVariant,
    /// Threads along rows.
    pub wg_m: u32,
    /// Threads along columns.
    pub wg_n: u32,
    /// Rows per thread.
    pub tm: u32,
    /// Columns per thread.
    pub tn: u32,
}

/// The two shapes of work a grouped GEMM sees, tuned separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TileKind {
    /// Many rows per expert.
    Prefill,
    /// About one row per expert: a matvec.
    Decode,
}

/// Largest TM and TN, and TM·TN: the kernels keep TM·TN accumulators (twice with a GLU) in
/// registers.
pub const MAX_TM: u32 = 8;
/// Largest TN.
pub const MAX_TN: u32 = 16;
/// Largest TM·TN.
pub const MAX_THREAD_OUTPUTS: u32 = 64;
/// Largest TN of the matvec, whose columns are the components of two vec4 accumulators.
pub const MAX_VECTOR_TN: u32 = 8;

impl Tiling {
    /// Many rows per expert: 4 × 4 register blocks, 64 threads along columns.
    pub const PREFILL: Tiling = Tiling::registers(1, 64, 4, 4);
    /// One row per expert: a matvec that reads each weight once.
    pub const DECODE: Tiling = Tiling::vector(64, 4);

    /// The register-tiled kernel with this tile.
    pub const fn registers(wg_m: u32, wg_n: u32, tm: u32, tn: u32) -> Self {
        Self {
            variant: MatmulVariant::Registers,
            wg_m,
            wg_n,
            tm,
            tn,
        }
    }

    /// The decode matvec with `wg_n` threads of `tn` columns each.
    pub const fn vector(wg_n: u32, tn: u32) -> Self {
        Self {
            variant: MatmulVariant::Vector,
            wg_m: 1,
            wg_n,
            tm: 1,
            tn,
        }
    }

    /// The shared-memory tiled kernel with this tile.
    pub const fn shared(wg_m: u32, wg_n: u32, tm: u32, tn: u32) -> Self {
        Self {
            variant: MatmulVariant::SharedTiles,
            wg_m,
            wg_n,
            tm,
            tn,
        }
    }

    /// The fixed tiling of `kind`, used when tuning is off.
    pub fn default_for(kind: TileKind) -> Self {
        match kind {
            TileKind::Prefill => Self::PREFILL,
            TileKind::Decode => Self::DECODE,
        }
    }

    /// The tilings the autotuner times for `kind`: register blocks (best on CPU adapters) and
    /// shared-memory tiles (best on real GPUs). Every one passes the reference sweep
    /// (tests/kernels/matmul_variants.rs).
    pub fn candidates(kind: TileKind) -> Vec<Tiling> {
        match kind {
            TileKind::Prefill => vec![
                Self::PREFILL,
                Self::registers(1, 64, 4, 8),
                Self::registers(1, 64, 8, 8),
                Self::shared(8, 8, 4, 4),
                Self::shared(16, 16, 4, 4),
            ],
            // Not registers(1, 32, 1, 16): its 16-column loop is not unrolled, and llvmpipe
            // ends an invocation's loops after 65535 iterations in all, which that loop's
            // 16 per k word reach below Mixtral's k of 14336 (tests/kernels/matmul_variants.rs).
            TileKind::Decode => vec![
                Self::registers(1, 64, 1, 4),
                Self::registers(1, 64, 1, 8),
                Self::vector(64, 2),
                Self::DECODE,
                Self::vector(32, 8),
            ],
        }
    }

    /// The tiling of an expert's last, partly filled tile when it holds at most
    /// `tail.block_m()` rows: the register kernel with half the rows per thread. On CPU
    /// adapters a thread's cost follows the rows it is compiled for, not the rows it holds, so
    /// such remainders run faster in their own dispatch (measured: the grouped GEMMs of the
    /// `moe bench` shapes take 4-13% less time). `None` for one row per thread and for the
    /// shared-memory kernel, whose tiles are GPU-sized.
    pub fn tail(self) -> Option<Tiling> {
        (self.variant == MatmulVariant::Registers && self.tm >= 2).then_some(Tiling {
            tm: self.tm / 2,
            ..self
        })
    }

    /// The most rows of an expert's last tile that go to the tail list: the tail's tile height,
    /// 0 without a tail.
    pub fn tail_m(self) -> u32 {
        self.tail().map_or(0, Tiling::block_m)
    }

    /// Threads per workgroup.
    pub fn threads(self) -> u32 {
        self.wg_m * self.wg_n
    }

    /// Rows one workgroup covers (the grouped GEMMs' tile height).
    pub fn block_m(self) -> u32 {
        self.wg_m * self.tm
    }

    /// Columns one workgroup covers.
    pub fn block_n(self) -> u32 {
        self.wg_n * self.tn
    }

    /// Workgroup memory the tiled kernel declares (its x and gate/up weight slices).
    pub fn workgroup_bytes(self) -> u32 {
        match self.variant {
            MatmulVariant::Registers | MatmulVariant::Vector => 0,
            MatmulVariant::SharedTiles => TILED_BK * (self.block_m() + 2 * self.block_n()) * 4,
        }
    }

    /// Checks the tile against the kernels' register arrays and the device's limits.
    pub fn validate(self, ctx: &Context) -> Result<()> {
        let l = &ctx.limits;
        let bad = |why: String| Err(Error::input(format!("matmul tiling {self:?}: {why}")));
        if !(1..=MAX_TM).contains(&self.tm)
            || !(1..=MAX_TN).contains(&self.tn)
            || self.tm * self.tn > MAX_THREAD_OUTPUTS
        {
            return bad(format!(
                "TM must be 1..={MAX_TM}, TN 1..={MAX_TN} and TM·TN at most {MAX_THREAD_OUTPUTS}"
            ));
        }
        if self.variant == MatmulVariant::Vector
            && (self.wg_m != 1 || self.tm != 1 || self.tn > MAX_VECTOR_TN)
        {
            return bad(format!(
                "the matvec has one row per workgroup and at most {MAX_VECTOR_TN} columns per thread"
            ));
        }
        if self.wg_m == 0 || self.wg_n == 0 {
            return bad("a workgroup needs at least one thread".into());
        }
        if self.threads() > l.max_compute_invocations_per_workgroup
            || self.wg_m * self.wg_n > l.max_compute_workgroup_size_x
        {
            return bad(format!(
                "{} threads per workgroup, over the device limit {}",
                self.threads(),
                l.max_compute_invocations_per_workgroup
                    .min(l.max_compute_workgroup_size_x)
            ));
        }
        if self.workgroup_bytes() > l.max_compute_workgroup_storage_size {
            return bad(format!(
                "{} bytes of workgroup memory, over the device limit {}",
                self.workgroup_bytes(),
                l.max_compute_workgroup_storage_size
            ));
        }
        Ok(())
    }
}

/// k-slice width of the tiled kernel (`BK` in `shaders/matmul_tiled.wgsl`).
pub const TILED_BK: u32 = 16;
