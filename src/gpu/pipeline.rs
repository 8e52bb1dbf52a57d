//! A lazy pipeline cache. Every pipeline is built once per (kernel, override constants),
//! inside a validation error scope, so a WGSL or layout error comes back as [`Error::Shader`]
//! naming the kernel. Bind groups follow the kernel's declared bindings.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::gpu::kernel::{Access, KernelDef, Override};

/// A kernel plus the values of its override constants: the cache key. Kernels are told apart
/// by name.
#[derive(Debug, Clone)]
pub struct PipelineKey {
    /// The kernel.
    pub kernel: &'static KernelDef,
    /// Sorted by name; values as f64 bits.
    constants: Vec<(Override, u64)>,
}

impl PartialEq for PipelineKey {
    fn eq(&self, other: &Self) -> bool {
        self.kernel.name == other.kernel.name && self.constants == other.constants
    }
}

impl Eq for PipelineKey {}

impl Hash for PipelineKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kernel.name.hash(state);
        self.constants.hash(state);
    }
}

impl PipelineKey {
    /// `kernel` with every override constant at its WGSL default.
    pub fn new(kernel: &'static KernelDef) -> Self {
        Self {
            kernel,
            constants: Vec::new(),
        }
    }

    /// Sets a WGSL `override` constant (bools as 0/1, integers and floats as f64).
    pub fn with(mut self, name: Override, value: f64) -> Self {
        self.constants.retain(|(n, _)| *n != name);
        self.constants.push((name, value.to_bits()));
        self.constants.sort_by_key(|(n, _)| *n);
        self
    }

    /// Sets a `bool` override constant.
    pub fn flag(self, name: Override, on: bool) -> Self {
        self.with(name, if on { 1.0 } else { 0.0 })
    }

    /// The same override constants for another kernel of the family (one that shares the
    /// prefix that declares them).
    pub fn for_kernel(mut self, kernel: &'static KernelDef) -> Self {
        self.kernel = kernel;
        self
    }
}

/// A built pipeline and the layout its bind groups must follow.
pub struct Pipeline {
    /// The kernel it was built from.
    pub kernel: &'static KernelDef,
    /// The compute pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// The bind group layout its bind groups must follow.
    pub layout: wgpu::BindGroupLayout,
}

impl Pipeline {
    /// Creates a bind group from whole buffers given in `@binding` order, one per declared
    /// binding.
    pub fn bind(
        &self,
        device: &wgpu::Device,
        buffers: &[&wgpu::Buffer],
    ) -> Result<wgpu::BindGroup> {
        let resources: Vec<wgpu::BindingResource> =
            buffers.iter().map(|b| b.as_entire_binding()).collect();
        self.bind_resources(device, &resources)
    }

    /// Creates a bind group from resources given in `@binding` order (for a uniform bound
    /// with a dynamic offset: the size of one block); an error unless there is one per
    /// declared binding.
    pub fn bind_resources(
        &self,
        device: &wgpu::Device,
        resources: &[wgpu::BindingResource<'_>],
    ) -> Result<wgpu::BindGroup> {
        let declared = self.kernel.bindings;
        if resources.len() != declared.len() {
            let names: Vec<&str> = declared.iter().map(|b| b.name).collect();
            return Err(Error::Shader {
                kernel: self.kernel.name.to_string(),
                message: format!(
                    "{} buffers given for {} bindings ({})",
                    resources.len(),
                    declared.len(),
                    names.join(", ")
                ),
            });
        }
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        Ok(device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.kernel.name),
            layout: &self.layout,
            entries: &entries,
        }))
    }
}

/// Pipelines by key, built on first use.
#[derive(Default)]
pub struct PipelineCache {
    built: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    /// Nanoseconds spent building pipelines (shader compilation).
    build_nanos: AtomicU64,
}

impl PipelineCache {
    /// The pipeline for `key`, built on `device` on first use.
    pub fn get(&self, device: &wgpu::Device, key: &PipelineKey) -> Result<Arc<Pipeline>> {
        if let Some(p) = self.lock().get(key) {
            return Ok(p.clone());
        }
        let started = Instant::now();
        let built = Arc::new(build_pipeline(device, key)?);
        let nanos = started.elapsed().as_nanos() as u64;
        self.build_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.lock().insert(key.clone(), built.clone());
        Ok(built)
    }

    /// Time spent building pipelines so far.
    pub fn build_time(&self) -> Duration {
        Duration::from_nanos(self.build_nanos.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PipelineKey, Arc<Pipeline>>> {
        self.built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn build_pipeline(device: &wgpu::Device, key: &PipelineKey) -> Result<Pipeline> {
    let kernel = key.kernel;
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(kernel.name),
        source: wgpu::ShaderSource::Wgsl(kernel.source()),
    });
    let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
        .bindings
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match b.access {
                Access::Uniform | Access::UniformDynamic => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: b.access == Access::UniformDynamic,
                    min_binding_size: None,
                },
                Access::Read | Access::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: b.access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
            },
            count: None,
        })
        .collect();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(kernel.name),
        entries: &entries,
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(kernel.name),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let constants: Vec<(&str, f64)> = key
        .constants
        .iter()
        .map(|(n, bits)| (n.name(), f64::from_bits(*bits)))
        .collect();
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(kernel.name),
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
            kernel: format!("{} {:?}", kernel.name, constants),
            message: err.to_string(),
        });
    }
    Ok(Pipeline {
        kernel,
        pipeline,
        layout,
    })
}
