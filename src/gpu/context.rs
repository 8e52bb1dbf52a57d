//! The device seam: choose an adapter (or adopt the application's device) and hold the queue,
//! limits, features and the pipeline cache that every kernel goes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::gpu::adapter::{ContextOptions, autotune_from_env, choose_adapter};
use crate::gpu::device_memory;
use crate::gpu::fault::Health;
use crate::gpu::pipeline::{Pipeline, PipelineCache, PipelineKey};

/// A wgpu device and queue plus what moe-gpu needs to know about them.
///
/// Build one with [`Context::new`] (adapter chosen from the environment) or adopt the
/// application's own device with [`Context::from_device`].
///
/// A `Context` is `Send + Sync`: threads may share one (`&Context` in scoped threads, or an
/// `Arc<Context>`), each with its own [`crate::Model`] on it.
///
/// GPU faults are errors, never panics. A buffer the device cannot allocate is an
/// [`Error::GpuAllocation`] naming it and its size. When the device is lost (a driver reset,
/// `device.destroy()`), submits, waits, readbacks and new buffers fail with
/// [`Error::DeviceLost`]; a wgpu error that no error scope caught fails them with
/// [`Error::Gpu`] (see [`Context::check_device`]). Either way the context is done for: drop
/// the models and the context, and build new ones on a fresh device.
pub struct Context {
    /// The device every buffer and pipeline is created on.
    pub device: wgpu::Device,
    /// The queue every submission and upload goes to.
    pub queue: wgpu::Queue,
    /// Name, backend, driver and device type of the adapter.
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with (binding and buffer sizes among them).
    pub limits: wgpu::Limits,
    /// The features the device was created with (f16, subgroups, timestamps where present).
    pub features: wgpu::Features,
    pipelines: PipelineCache,
    /// Command-buffer submissions made through [`Context::submit`].
    submits: AtomicU64,
    /// Advanced by every submit and every [`Context::discard`]: dispatches recorded in one
    /// epoch read their parameter blocks when it is submitted, so kernels check against it
    /// that no block changes under a recorded dispatch.
    epoch: Arc<AtomicU64>,
    autotune: AtomicBool,
    /// Bytes of the storage and staging buffers created through this context, freed or not
    /// (what a [`crate::model::memory::MemoryPlan`] predicts; uniforms are not counted).
    allocated: AtomicU64,
    /// [`ContextOptions::max_binding`] or [`Context::lower_max_binding`]; `u64::MAX` when unset.
    binding_cap: AtomicU64,
    /// Bytes queued by [`Context::write`] since it last submitted them.
    pending_writes: AtomicU64,
    /// [`Context::device_memory`]: stated, or as the backend reported it (0: unknown).
    device_memory: AtomicU64,
    /// Nanoseconds the kernels spent tuning their tilings ([`Context::tuning_time`]).
    tuning_nanos: AtomicU64,
    /// Device loss and uncaptured errors, as wgpu's callbacks reported them.
    health: Arc<Health>,
}

/// Queued bytes of [`Context::write`] after which they are submitted as one batch.
pub const FLUSH_BYTES: u64 = 256 << 20;

/// The lowest binding limit [`Context::lower_max_binding`] accepts.
const MIN_BINDING_CAP: u64 = 4096;

/// Optional features we use when the adapter has them.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);

impl Context {
    /// The pipeline for `key`, built on first use.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<Pipeline>> {
        self.pipelines.get(&self.device, key)
    }

    /// Picks an adapter according to `MOE_GPU_BACKEND` / `MOE_GPU_ADAPTER` and creates a device.
    pub fn new() -> Result<Self> {
        Self::with_options(&ContextOptions::from_env()?)
    }

    /// Picks an adapter according to `options` and creates a device with the adapter's own
    /// limits and the optional features it supports (f16, subgroups, timestamps).
    pub fn with_options(options: &ContextOptions) -> Result<Self> {
        let backends = options.backend.unwrap_or(wgpu::Backends::all());
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(choose_adapter(&instance, backends, options))?;
        let info = adapter.get_info();
        let features = adapter.features() & WANTED_FEATURES;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("moe-gpu"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|e| Error::Device {
            adapter: info.name.clone(),
            message: e.to_string(),
        })?;
        let ctx = Self::from_device(device, queue);
        ctx.set_autotune(options.autotune);
        if let Some(bytes) = options.max_binding {
            ctx.lower_max_binding(bytes)?;
        }
        if let Some(bytes) = options.device_memory {
            ctx.set_device_memory(bytes);
        }
        Ok(ctx)
    }

    /// Adopts an application's existing device and queue. Work is submitted to `queue`, and
    /// only the features and limits the device was created with are used. Autotuning follows
    /// `MOE_GPU_TUNE` (on unless it says off). It registers the device's lost callback and
    /// uncaptured-error handler (wgpu keeps one of each per device, so they replace the
    /// application's own): faults become errors of this context instead of panics.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let health = Health::install(&device);
        let info = device.adapter_info();
        let limits = device.limits();
        let features = device.features();
        let device_memory = device_memory::reported(&device).unwrap_or(0);
        Self {
            device,
            queue,
            info,
            limits,
            features,
            pipelines: PipelineCache::default(),
            submits: AtomicU64::new(0),
            epoch: Arc::new(AtomicU64::new(0)),
            autotune: AtomicBool::new(autotune_from_env()),
            allocated: AtomicU64::new(0),
            binding_cap: AtomicU64::new(u64::MAX),
            pending_writes: AtomicU64::new(0),
            device_memory: AtomicU64::new(device_memory),
            tuning_nanos: AtomicU64::new(0),
            health,
        }
    }

    /// The adapter's memory for buffers, in bytes, when known: as stated with
    /// [`Self::set_device_memory`] (or `MOE_GPU_DEVICE_MEMORY`), else the largest device-local
    /// heap where the backend reports heaps (Vulkan). `None` on other backends. Loading
    /// checks its memory plan against it.
    pub fn device_memory(&self) -> Option<u64> {
        Some(self.device_memory.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }

    /// Time spent compiling pipelines so far, tuning's candidates included: one-time set-up,
    /// which mostly falls in loading, as layers build their kernels.
    pub fn compile_time(&self) -> Duration {
        self.pipelines.build_time()
    }

    /// Time the kernels spent tuning their tilings so far ([`crate::kernels::tune`]; its
    /// compilation included): one-time set-up as well.
    pub fn tuning_time(&self) -> Duration {
        Duration::from_nanos(self.tuning_nanos.load(Ordering::Relaxed))
    }

    /// Adds `spent` to [`Self::tuning_time`].
    pub(crate) fn note_tuning(&self, spent: Duration) {
        self.tuning_nanos
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
    }

    /// States the adapter's memory for buffers (a backend that reports none, or room to leave
    /// for the application's own buffers).
    pub fn set_device_memory(&self, bytes: u64) {
        self.device_memory.store(bytes, Ordering::Relaxed);
    }

    /// Bytes of every storage and staging buffer created through this context so far.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Counts a buffer of `bytes` bytes in [`Self::allocated_bytes`].
    pub(crate) fn note_allocation(&self, bytes: u64) {
        self.allocated.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Runs `work`, whose buffers are all dropped by its end (a measurement's probes), and
    /// leaves them out of [`Self::allocated_bytes`].
    pub fn transient<T>(&self, work: impl FnOnce() -> T) -> T {
        let before = self.allocated.load(Ordering::Relaxed);
        let out = work();
        let made = self
            .allocated
            .load(Ordering::Relaxed)
            .saturating_sub(before);
        self.allocated.fetch_sub(made, Ordering::Relaxed);
        out
    }

    /// Whether layers tune their matmul tilings (else they use the fixed defaults).
    pub fn autotune(&self) -> bool {
        self.autotune.load(Ordering::Relaxed)
    }

    /// Turns tuning on or off for layers built from now on.
    pub fn set_autotune(&self, on: bool) {
        self.autotune.store(on, Ordering::Relaxed);
    }

    /// Whether WGSL `f16` can be used.
    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// Largest buffer that can be bound to one storage binding: the adapter's limit, or the
    /// lower one of [`ContextOptions::max_binding`] / [`Self::lower_max_binding`]. Weights over
    /// it are split by output rows (`kernels::row_split`).
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
            .min(self.binding_cap.load(Ordering::Relaxed))
    }

    /// Treats `bytes` as the binding limit for buffers and layers created from now on (it
    /// never raises the adapter's). Under 4 KiB is refused: no model could split into it.
    pub fn lower_max_binding(&self, bytes: u64) -> Result<()> {
        if bytes < MIN_BINDING_CAP {
            return Err(Error::input(format!(
                "a binding limit of {bytes} bytes is below the least of {MIN_BINDING_CAP}"
            )));
        }
        self.binding_cap.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// One line describing the adapter: name, backend and device type.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Submits command buffers to the queue and counts the submission. Every submit of the
    /// library goes through here, so [`Context::submit_count`] measures submits per step.
    /// Fails, submitting nothing, once the device is lost ([`Context::check_device`]).
    pub fn submit(
        &self,
        buffers: impl IntoIterator<Item = wgpu::CommandBuffer>,
    ) -> Result<wgpu::SubmissionIndex> {
        self.check_device()?;
        self.submits.fetch_add(1, Ordering::Relaxed);
        let index = self.queue.submit(buffers);
        self.epoch.fetch_add(1, Ordering::Relaxed);
        Ok(index)
    }

    /// Drops recorded commands without running them (e.g. after timing how long recording
    /// takes), so that kernels may change their parameter blocks again.
    pub fn discard(&self, commands: wgpu::CommandBuffer) {
        drop(commands);
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// The recording epoch (see the field), for kernels that note which epoch their
    /// dispatches were recorded in.
    pub(crate) fn epoch_counter(&self) -> Arc<AtomicU64> {
        self.epoch.clone()
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Submissions made through [`Context::submit`] so far.
    pub fn submit_count(&self) -> u64 {
        self.submits.load(Ordering::Relaxed)
    }

    /// Queues a write of `data` into `buffer` at `offset`, as `queue.write_buffer`, for weights
    /// and other large uploads: a queued write holds a staging copy of its data until a submit
    /// runs it, so a loader writing gigabytes before its first submit would hold a second copy
    /// of all of it in host memory. Every [`FLUSH_BYTES`] of such writes are submitted, and
    /// the staging of batches the GPU has finished is freed. Nothing waits: a blocking wait
    /// here would stall an expert cache's uploads behind the GEMMs in flight (10% of decode
    /// speed at OLMoE-1B-7B's size on lavapipe).
    pub fn write(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) -> Result<()> {
        self.check_device()?;
        self.queue.write_buffer(buffer, offset, data);
        let pending = self
            .pending_writes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if pending + data.len() as u64 >= FLUSH_BYTES {
            self.pending_writes.store(0, Ordering::Relaxed);
            // An empty submit runs the queued writes, before any later submission's commands,
            // as they would have run anyway; it is not a step's, so it is not counted.
            self.queue.submit([]);
            self.poll(wgpu::PollType::Poll)?;
        }
        Ok(())
    }

    /// `Ok` while the device is usable. After the device was lost ([`Error::DeviceLost`]) or
    /// wgpu reported an error that no error scope caught ([`Error::Gpu`]), this and every
    /// later submit, wait, readback, upload and buffer creation fail with that error. Drop the
    /// [`crate::Model`]s and this `Context`, and build new ones.
    pub fn check_device(&self) -> Result<()> {
        self.health.check(&self.device)
    }

    /// Polls the device, then checks it; a panic of wgpu inside the poll becomes a loss.
    pub(crate) fn poll(&self, poll: wgpu::PollType) -> Result<()> {
        self.health.poll(&self.device, poll)
    }

    /// Blocks until every submitted command has finished; fails if the device was lost.
    pub fn wait(&self) -> Result<()> {
        self.poll(wgpu::PollType::wait_indefinitely())
    }
}
