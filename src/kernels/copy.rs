//! `shaders/copy.wgsl`: dst = src. The benchmarks' yardstick for achievable bytes per second.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Context, Kernel, PipelineKey};
use crate::kernels::{Dispatch, WORKGROUP, groups};

/// Mirrors `Params` in `shaders/copy.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct CopyParams {
    pub words: u32,
    pub stride: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Most workgroups a copy launches; each thread then loops over the rest.
const MAX_GROUPS: u32 = 4096;

/// A copy of the first `bytes` bytes (a multiple of 16) of `src` into `dst`.
pub struct Copy {
    dispatch: Dispatch<CopyParams>,
    groups: u32,
}

impl Copy {
    pub fn new(ctx: &Context, src: &wgpu::Buffer, dst: &wgpu::Buffer, bytes: u64) -> Result<Self> {
        if !bytes.is_multiple_of(16) || bytes > src.size() || bytes > dst.size() {
            return Err(Error::input(format!(
                "copy of {bytes} bytes: must be a multiple of 16 and fit both buffers ({} and {})",
                src.size(),
                dst.size()
            )));
        }
        let words = (bytes / 16) as usize;
        let groups = groups(words, WORKGROUP).clamp(1, MAX_GROUPS);
        let params = CopyParams {
            words: words as u32,
            stride: groups * WORKGROUP,
            _pad0: 0,
            _pad1: 0,
        };
        let dispatch = Dispatch::new(ctx, &PipelineKey::new(Kernel::Copy), params, &[src, dst])?;
        Ok(Self { dispatch, groups })
    }

    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.dispatch.dispatch(pass, self.groups, 1);
    }
}
