//! Where each query row of a step sits: its sequence's first KV-cache row and its position.
//! RoPE reads the position (its angle, and the cache row it writes) and attention reads both
//! (which keys the row sees, and where they are), so one step may hold rows of several
//! sequences, each with its own cache and position, as well as consecutive tokens of one.

use std::sync::Mutex;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::Context;

/// One query row: mirrors `vec2<u32>` in `shaders/rope.wgsl` and `shaders/attention.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct RowPlace {
    /// The first cache row of the row's sequence: its keys are cache rows
    /// `cache_row0 .. cache_row0 + position + 1`.
    pub cache_row0: u32,
    /// The row's position within its sequence.
    pub position: u32,
}

impl RowPlace {
    /// `tokens` consecutive tokens, from position `pos0`, of one sequence whose cache starts
    /// at row `cache_row0`.
    pub fn consecutive(cache_row0: usize, pos0: usize, tokens: usize) -> Vec<RowPlace> {
        (pos0..pos0 + tokens)
            .map(|p| RowPlace {
                cache_row0: cache_row0 as u32,
                position: p as u32,
            })
            .collect()
    }
}

/// A `[max_rows]` GPU table of [`RowPlace`]s shared by a step's RoPE and attention kernels,
/// written only when its rows change (once per step however many kernels read it).
pub struct RowTable {
    buffer: wgpu::Buffer,
    written: Mutex<Vec<RowPlace>>,
    max_rows: usize,
}

impl RowTable {
    /// A table for steps of at most `max_rows` rows.
    pub fn new(ctx: &Context, max_rows: usize) -> Result<Self> {
        let buffer = ctx.create_buffer(
            "row places",
            (max_rows.max(1) * size_of::<RowPlace>()) as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(Self {
            buffer,
            written: Mutex::new(Vec::new()),
            max_rows,
        })
    }

    /// The `[max_rows]` table the kernels bind.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Most rows one step may hold.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Makes the table hold `rows` (a write only when they changed).
    pub fn set(&self, ctx: &Context, rows: &[RowPlace]) -> Result<()> {
        if rows.len() > self.max_rows {
            return Err(Error::input(format!(
                "{} rows exceed the {} a step was built for",
                rows.len(),
                self.max_rows
            )));
        }
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written.as_slice() != rows {
            ctx.queue
                .write_buffer(&self.buffer, 0, bytemuck::cast_slice(rows));
            *written = rows.to_vec();
        }
        Ok(())
    }
}
