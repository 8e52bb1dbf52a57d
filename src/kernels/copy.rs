//! `shaders/copy.wgsl`: dst = src, or a read-only pass over src. The benchmarks' yardsticks for
//! achievable bytes per second.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Binding, Context, KernelDef, Override, PipelineKey};
use crate::kernels::{Dispatch, WORKGROUP, groups};

/// Only read `src`, writing one sum per thread to `dst`.
pub const READ_ONLY: Override = Override("READ_ONLY");

/// The copy or read (`shaders/copy.wgsl`).
pub static COPY: KernelDef = KernelDef {
    name: "copy",
    parts: &[include_str!("../../shaders/copy.wgsl")],
    bindings: &[
        Binding::uniform("p"),      // CopyParams
        Binding::read("src"),       // [words] vec4<u32>
        Binding::read_write("dst"), // [words] vec4<u32>, or [stride] sums
    ],
    overrides: &[READ_ONLY],
};

/// Mirrors `Params` in `shaders/copy.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct CopyParams {
    pub words: u32,
    pub stride: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Workgroups a copy launches by default; each thread then loops over the rest.
pub const DEFAULT_GROUPS: u32 = 4096;

/// What a [`struct@Copy`] does with the bytes it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// Writes them to `dst`.
    Copy,
    /// Only reads them (`dst` receives one sum per thread, a few KiB).
    Read,
}

/// A copy (or a read) of the first `bytes` bytes (a multiple of 16) of `src` by at most
/// `max_groups` workgroups of 64 threads.
pub struct Copy {
    dispatch: Dispatch<CopyParams>,
    groups: u32,
}

impl Copy {
    /// Builds the copy (or read) of `bytes` bytes of `src` into `dst`.
    pub fn new(
        ctx: &Context,
        mode: CopyMode,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        bytes: u64,
        max_groups: u32,
    ) -> Result<Self> {
        let words = (bytes / 16) as usize;
        let groups = groups(words, WORKGROUP).clamp(1, max_groups.max(1));
        let dst_bytes = match mode {
            CopyMode::Copy => bytes,
            CopyMode::Read => 16 * u64::from(groups * WORKGROUP).min(words as u64),
        };
        if !bytes.is_multiple_of(16) || bytes > src.size() || dst_bytes > dst.size() {
            return Err(Error::input(format!(
                "{mode:?} of {bytes} bytes: must be a multiple of 16 and fit the source ({}), \
                 with {dst_bytes} bytes of destination ({})",
                src.size(),
                dst.size()
            )));
        }
        let params = CopyParams {
            words: words as u32,
            stride: groups * WORKGROUP,
            _pad0: 0,
            _pad1: 0,
        };
        let key = PipelineKey::new(&COPY).flag(READ_ONLY, mode == CopyMode::Read);
        let dispatch = Dispatch::new(ctx, &key, params, &[src, dst])?;
        Ok(Self { dispatch, groups })
    }

    /// Workgroups launched.
    pub fn groups(&self) -> u32 {
        self.groups
    }

    /// Records the copy.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.dispatch.dispatch(pass, self.groups, 1);
    }
}
