//! Typed kernel keys and a lazy pipeline cache. Every pipeline is built once per
//! (kernel, override constants), inside a validation error scope, so a WGSL or layout error
//! comes back as [`Error::Shader`] naming the kernel.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Context;

/// How a kernel's binding is used; the index in the list is the `@binding` number in group 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    /// A uniform block chosen per dispatch by a dynamic offset (kernels dispatched several
    /// times in one pass with different parameters).
    UniformDynamic,
    Read,
    ReadWrite,
}

/// Every compute kernel of moe-gpu. The WGSL source lives in `shaders/<name>.wgsl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Register-blocked matmul (`matmul.wgsl` after `matmul_common.wgsl`).
    Matmul,
    /// Shared-memory tiled matmul (`matmul_tiled.wgsl` after `matmul_common.wgsl`).
    MatmulTiled,
    /// Decode matvec (`matmul_vec.wgsl` after `matmul_common.wgsl`, `matvec_common.wgsl`).
    MatmulVec,
    /// Decode down projection fused with the combine (`down_combine.wgsl` after
    /// `matmul_common.wgsl`, `matvec_common.wgsl`).
    DownCombine,
    /// Plain buffer copy, the bandwidth yardstick of the benchmarks.
    Copy,
    Select,
    Scan,
    Scatter,
    Combine,
    RmsNorm,
    Rope,
    /// One thread per (token, head, key split) (`attention.wgsl` after `attention_common.wgsl`).
    Attention,
    /// Fixed-order merge of the key splits (`attention_combine.wgsl`).
    AttentionCombine,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Matmul => "matmul",
            Kernel::MatmulTiled => "matmul_tiled",
            Kernel::MatmulVec => "matmul_vec",
            Kernel::DownCombine => "down_combine",
            Kernel::Copy => "copy",
            Kernel::Select => "select",
            Kernel::Scan => "scan",
            Kernel::Scatter => "scatter",
            Kernel::Combine => "combine",
            Kernel::RmsNorm => "rmsnorm",
            Kernel::Rope => "rope",
            Kernel::Attention => "attention",
            Kernel::AttentionCombine => "attention_combine",
        }
    }

    /// The WGSL source: the kernel's file, after the shared file of its family if it has one.
    fn source(self) -> Cow<'static, str> {
        const MATMUL_COMMON: &str = include_str!("../../shaders/matmul_common.wgsl");
        const MATVEC_COMMON: &str = include_str!("../../shaders/matvec_common.wgsl");
        const ATTENTION_COMMON: &str = include_str!("../../shaders/attention_common.wgsl");
        const PERMUTE_COMMON: &str = include_str!("../../shaders/permute_common.wgsl");
        let file = match self {
            Kernel::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Kernel::MatmulTiled => include_str!("../../shaders/matmul_tiled.wgsl"),
            Kernel::MatmulVec => include_str!("../../shaders/matmul_vec.wgsl"),
            Kernel::DownCombine => include_str!("../../shaders/down_combine.wgsl"),
            Kernel::Copy => include_str!("../../shaders/copy.wgsl"),
            Kernel::Select => include_str!("../../shaders/select.wgsl"),
            Kernel::Scan => include_str!("../../shaders/scan.wgsl"),
            Kernel::Scatter => include_str!("../../shaders/scatter.wgsl"),
            Kernel::Combine => include_str!("../../shaders/combine.wgsl"),
            Kernel::RmsNorm => include_str!("../../shaders/rmsnorm.wgsl"),
            Kernel::Rope => include_str!("../../shaders/rope.wgsl"),
            Kernel::Attention => include_str!("../../shaders/attention.wgsl"),
            Kernel::AttentionCombine => include_str!("../../shaders/attention_combine.wgsl"),
        };
        match self {
            Kernel::Matmul | Kernel::MatmulTiled => Cow::Owned(format!("{MATMUL_COMMON}\n{file}")),
            Kernel::MatmulVec | Kernel::DownCombine => {
                Cow::Owned(format!("{MATMUL_COMMON}\n{MATVEC_COMMON}\n{file}"))
            }
            Kernel::Attention | Kernel::AttentionCombine => {
                Cow::Owned(format!("{ATTENTION_COMMON}\n{file}"))
            }
            Kernel::Select | Kernel::Scan => Cow::Owned(format!("{PERMUTE_COMMON}\n{file}")),
            _ => Cow::Borrowed(file),
        }
    }

    /// The binding list of group 0, in `@binding` order.
    fn bindings(self) -> &'static [Binding] {
        use Binding::*;
        match self {
            // params, x, w, bias, slots, tiles, rows, out
            Kernel::Matmul | Kernel::MatmulTiled | Kernel::MatmulVec => {
                &[Uniform, Read, Read, Read, Read, Read, Read, ReadWrite]
            }
            // the matmul's, then ids, pair positions, routing weights, shared out, shared
            // gate, expert out
            Kernel::DownCombine => &[
                Uniform, Read, Read, Read, Read, Read, Read, ReadWrite, Read, Read, Read, Read,
                Read, ReadWrite,
            ],
            // params, src, dst
            Kernel::Copy => &[Uniform, Read, ReadWrite],
            // params, logits, correction bias, ids, weights, shared gate, counts, then the
            // permutation's offsets, cursor, tiles, indirect args, rows, pos
            Kernel::Select => &[
                Uniform, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite,
                ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite,
            ],
            // params, counts, offsets, cursor, tiles, indirect args, ids, rows, pos
            Kernel::Scan => &[
                Uniform, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite, Read, ReadWrite,
                ReadWrite,
            ],
            // params, ids, cursor, rows, pos
            Kernel::Scatter => &[Uniform, Read, ReadWrite, ReadWrite, ReadWrite],
            // params, weights, pos, expert out, shared out, shared gate, out
            Kernel::Combine => &[Uniform, Read, Read, Read, Read, Read, ReadWrite],
            // params, delta, x (residual), weight, out
            Kernel::RmsNorm => &[Uniform, Read, ReadWrite, Read, ReadWrite],
            // params, src, cos/sin table, dst
            Kernel::Rope => &[Uniform, Read, Read, ReadWrite],
            // params (one block per pass), q, k cache, v cache, sinks, partials, out
            Kernel::Attention => &[UniformDynamic, Read, Read, Read, Read, ReadWrite, ReadWrite],
            // params, partials, sinks, out
            Kernel::AttentionCombine => &[Uniform, Read, Read, ReadWrite],
        }
    }
}

/// A kernel plus the values of its override constants: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    constants: Vec<(&'static str, u64)>,
}

impl PipelineKey {
    pub fn new(kernel: Kernel) -> Self {
        Self {
            kernel,
            constants: Vec::new(),
        }
    }

    /// Sets a WGSL `override` constant (bools as 0/1, integers and floats as f64).
    pub fn with(mut self, name: &'static str, value: f64) -> Self {
        self.constants.retain(|(n, _)| *n != name);
        self.constants.push((name, value.to_bits()));
        self.constants.sort_by_key(|(n, _)| *n);
        self
    }

    pub fn flag(self, name: &'static str, on: bool) -> Self {
        self.with(name, if on { 1.0 } else { 0.0 })
    }

    /// The same override constants for another kernel of the family (one that shares the
    /// prefix that declares them).
    pub fn for_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }
}

/// A built pipeline and the layout its bind groups must follow.
pub struct Pipeline {
    pub kernel: Kernel,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

impl Pipeline {
    /// Creates a bind group from buffers given in `@binding` order.
    pub fn bind(&self, ctx: &Context, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.kernel.name()),
            layout: &self.layout,
            entries: &entries,
        })
    }
}

/// Pipelines by key, built on first use.
#[derive(Default)]
pub struct PipelineCache {
    built: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

impl Context {
    /// The pipeline for `key`, built on first use.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<Pipeline>> {
        if let Some(p) = self.pipelines.lock().get(key) {
            return Ok(p.clone());
        }
        let built = Arc::new(build_pipeline(self, key)?);
        self.pipelines.lock().insert(key.clone(), built.clone());
        Ok(built)
    }
}

impl PipelineCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PipelineKey, Arc<Pipeline>>> {
        self.built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn build_pipeline(ctx: &Context, key: &PipelineKey) -> Result<Pipeline> {
    let kernel = key.kernel;
    let device = &ctx.device;
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(kernel.name()),
        source: wgpu::ShaderSource::Wgsl(kernel.source()),
    });
    let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
        .bindings()
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match b {
                Binding::Uniform | Binding::UniformDynamic => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: *b == Binding::UniformDynamic,
                    min_binding_size: None,
                },
                Binding::Read | Binding::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *b == Binding::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(kernel.name()),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(kernel.name()),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let constants: Vec<(&str, f64)> = key
        .constants
        .iter()
        .map(|(n, bits)| (*n, f64::from_bits(*bits)))
        .collect();
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(kernel.name()),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    if let Some(err) = pollster::block_on(scope.pop()) {
        return Err(Error::Shader {
            kernel: format!("{} {:?}", kernel.name(), constants),
            message: err.to_string(),
        });
    }
    Ok(Pipeline {
        kernel,
        pipeline,
        layout,
    })
}
