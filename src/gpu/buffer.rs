//! GPU buffers: creation under the device limits, upload, and readback through staging.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::gpu::context::Context;

/// Usage of every storage buffer: bound to kernels, filled by uploads, copied out for readback.
const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// Buffer sizes are rounded up to this: bindings of size zero are invalid, and kernels may read
/// f32 buffers as `array<vec4<f32>>`, whose last element must lie inside the binding.
pub const BUFFER_ALIGN: u64 = 16;

/// The size of a buffer created for `bytes` bytes: rounded up to [`BUFFER_ALIGN`], at least one
/// unit.
pub fn padded(bytes: u64) -> u64 {
    bytes.max(1).div_ceil(BUFFER_ALIGN) * BUFFER_ALIGN
}

impl Context {
    /// Fails with [`Error::DeviceLimit`] if `bytes` cannot be one storage binding.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        let limit = self.max_binding();
        if bytes > limit {
            return Err(Error::DeviceLimit {
                what: what.to_string(),
                needed: bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        Ok(())
    }

    /// An uninitialised (zeroed) storage buffer of `bytes` bytes.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.buffer(label, bytes, STORAGE)
    }

    /// A storage buffer that can also hold indirect dispatch arguments.
    pub fn indirect_storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.buffer(label, bytes, STORAGE | wgpu::BufferUsages::INDIRECT)
    }

    /// A storage buffer holding `data`.
    pub fn storage_with<T: Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buffer = self.storage(label, bytes.len() as u64)?;
        if !bytes.is_empty() {
            self.write(&buffer, 0, bytes)?;
        }
        Ok(buffer)
    }

    /// A uniform buffer holding one parameter struct.
    pub fn uniform<T: Pod>(&self, label: &str, value: &T) -> Result<wgpu::Buffer> {
        let bytes = bytemuck::bytes_of(value);
        let usage = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let buffer = self.create_buffer(label, padded(bytes.len() as u64), usage)?;
        self.queue.write_buffer(&buffer, 0, bytes);
        Ok(buffer)
    }

    fn buffer(&self, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
        self.check_binding(label, bytes)?;
        let buffer = self.create_buffer(label, padded(bytes), usage)?;
        self.note_allocation(padded(bytes));
        Ok(buffer)
    }

    /// A buffer of exactly `bytes` bytes. Every buffer of the library is created here: over
    /// the device's `max_buffer_size`, out of device memory, or refused by validation, it is an
    /// [`Error::GpuAllocation`] naming `label` and `bytes` (wgpu error scopes catch the last
    /// two); on a lost device it is [`Error::DeviceLost`].
    pub fn create_buffer(
        &self,
        label: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        self.check_device()?;
        let refused = |reason: String| Error::GpuAllocation {
            label: label.to_string(),
            bytes,
            reason,
        };
        let limit = self.limits.max_buffer_size;
        if bytes > limit {
            return Err(refused(format!(
                "over the device limit max_buffer_size = {limit} bytes"
            )));
        }
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage,
            mapped_at_creation: false,
        });
        let invalid = pollster::block_on(invalid.pop());
        let out_of_memory = pollster::block_on(out_of_memory.pop());
        match out_of_memory.or(invalid) {
            Some(error) => Err(refused(error.to_string())),
            None => Ok(buffer),
        }
    }

    /// Copies `count` elements of `T` from the start of `buffer` to the host (one submit).
    pub fn read_back<T: Pod>(&self, buffer: &wgpu::Buffer, count: usize) -> Result<Vec<T>> {
        let bytes = (count * std::mem::size_of::<T>()) as u64;
        let staging = Staging::new(self, "read_back", bytes)?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        staging.copy_from(&mut encoder, buffer, 0, 0, bytes);
        self.submit([encoder.finish()])?;
        staging.read(self, count)
    }
}

/// A preallocated host-visible buffer that kernels' results are copied into.
pub struct Staging {
    buffer: wgpu::Buffer,
}

impl Staging {
    /// A staging buffer of `bytes` bytes (rounded up to [`BUFFER_ALIGN`]).
    pub fn new(ctx: &Context, label: &str, bytes: u64) -> Result<Self> {
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let buffer = ctx.create_buffer(label, padded(bytes), usage)?;
        ctx.note_allocation(padded(bytes));
        Ok(Self { buffer })
    }

    /// Records a copy of `bytes` bytes of `src` (from `src_offset`) to `dst_offset` here.
    pub fn copy_from(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst_offset: u64,
        bytes: u64,
    ) {
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(src, src_offset, &self.buffer, dst_offset, bytes);
        }
    }

    /// Waits for the submitted work, then returns the first `bytes` bytes.
    pub fn read_bytes(&self, ctx: &Context, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let slice = self.buffer.slice(0..bytes.div_ceil(4) * 4);
        let (tx, rx) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.wait()?;
        // Another thread's poll may be running this map's callback still: wait for it, but
        // never past a device loss.
        let mapped = loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(mapped) => break mapped,
                Err(RecvTimeoutError::Timeout) => ctx.poll(wgpu::PollType::Poll)?,
                Err(e @ RecvTimeoutError::Disconnected) => {
                    ctx.check_device()?;
                    return Err(Error::gpu("readback", e));
                }
            }
        };
        if let Err(e) = mapped {
            ctx.check_device()?;
            return Err(Error::gpu("readback", e));
        }
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::gpu("readback", e))?;
            view[..bytes as usize].to_vec()
        };
        self.buffer.unmap();
        Ok(out)
    }

    /// Waits for the submitted work, then reads `count` elements of `T` from the start.
    pub fn read<T: Pod>(&self, ctx: &Context, count: usize) -> Result<Vec<T>> {
        let bytes = self.read_bytes(ctx, (count * std::mem::size_of::<T>()) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// `count` elements of `T` starting at byte `offset` of `bytes`.
pub fn decode<T: Pod>(bytes: &[u8], offset: u64, count: usize) -> Vec<T> {
    let start = offset as usize;
    bytemuck::pod_collect_to_vec(&bytes[start..start + count * std::mem::size_of::<T>()])
}
