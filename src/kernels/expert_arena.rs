//! VRAM slots for routed experts: the gate/up and down weights (each split by output rows
//! into as many buffers as the binding limit requires) and their biases, with one expert per
//! slot. Each layer keeps its own expert → slot table for the grouped GEMMs, so several layers
//! can share one arena.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::matmul::ExpertFormat;
use crate::kernels::row_split::{SplitShape, SplitWeights};
use crate::spec::INVALID;
use crate::spec::weights::{ExpertSource, ExpertWeights, PackedExpert};

/// VRAM slots for expert weights of one shape.
pub struct ExpertArena {
    /// Experts the arena holds at once.
    pub slots: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Expert width.
    pub inter: usize,
    /// Storage formats of the gate/up and down weights.
    pub format: ExpertFormat,
    /// Per part of `inter` columns: [slots, 2·len, hidden (padded)] gate rows then up rows,
    /// each slot ending in its scale block in the quantised formats (see `weight_packing`).
    pub gate_up: SplitWeights,
    /// Per part of `hidden` columns: [slots, len, inter (padded)], scales likewise.
    pub down: SplitWeights,
    /// [slots, 2·inter]
    pub gate_up_bias: wgpu::Buffer,
    /// [slots, hidden]
    pub down_bias: wgpu::Buffer,
}

impl ExpertArena {
    /// Allocates `slots` empty slots; without `bias` the bias buffers hold one zero slot.
    pub fn new(
        ctx: &Context,
        hidden: usize,
        inter: usize,
        slots: usize,
        format: ExpertFormat,
        bias: bool,
    ) -> Result<Self> {
        let [gate_up, down] = Self::weight_shapes(hidden, inter, slots, format);
        let gate_up = SplitWeights::new(ctx, "expert gate_up slots", gate_up)?;
        let down = SplitWeights::new(ctx, "expert down slots", down)?;
        let [_, _, gate_up_bias, down_bias] =
            Self::buffer_bytes(hidden, inter, slots, format, bias, u64::MAX)?;
        let storage = |(label, bytes): (&str, u64)| ctx.storage(label, bytes);
        let (gate_up_bias, down_bias) = (storage(gate_up_bias)?, storage(down_bias)?);
        Ok(Self {
            slots,
            hidden,
            inter,
            format,
            gate_up,
            down,
            gate_up_bias,
            down_bias,
        })
    }

    /// The gate/up (GLU) and down weights of `slots` slots.
    pub fn weight_shapes(
        hidden: usize,
        inter: usize,
        slots: usize,
        format: ExpertFormat,
    ) -> [SplitShape; 2] {
        let shape = |n, rows_per_output, k, format| SplitShape {
            n,
            rows_per_output,
            k,
            format,
            slots,
        };
        [
            shape(inter, 2, hidden, format.gate_up),
            shape(hidden, 1, inter, format.down),
        ]
    }

    /// Bytes of the arena's buffers, by name, in allocation order: gate/up and down slots (the
    /// sum of their parts under a binding limit of `limit` bytes) and their biases (one zero
    /// slot without `bias`).
    pub fn buffer_bytes(
        hidden: usize,
        inter: usize,
        slots: usize,
        format: ExpertFormat,
        bias: bool,
        limit: u64,
    ) -> Result<[(&'static str, u64); 4]> {
        let bias_slots = if bias { slots } else { 1 };
        let [gate_up, down] = Self::weight_shapes(hidden, inter, slots, format);
        let sum = |s: SplitShape| s.part_bytes(limit).map(|b| b.iter().sum::<u64>());
        Ok([
            ("expert gate_up slots", sum(gate_up)?),
            ("expert down slots", sum(down)?),
            ("expert gate_up bias", (bias_slots * 2 * inter * 4) as u64),
            ("expert down bias", (bias_slots * hidden * 4) as u64),
        ])
    }

    /// Bytes one expert occupies in VRAM (and crosses the bus to get there): its matrices in
    /// `format`, quantisation scales included, and its f32 biases.
    pub fn expert_bytes(hidden: usize, inter: usize, format: ExpertFormat, bias: bool) -> u64 {
        let biases = if bias {
            (2 * inter + hidden) as u64 * 4
        } else {
            0
        };
        format.gate_up.matrix_bytes(2 * inter, hidden)
            + format.down.matrix_bytes(hidden, inter)
            + biases
    }

    /// Writes one expert's weights into `slot` (queued; visible to the next submit).
    pub fn upload(&self, ctx: &Context, slot: usize, w: &ExpertWeights) -> Result<()> {
        self.upload_packed(ctx, slot, &w.pack(self.format, self.hidden, self.inter))
    }

    /// Expert `expert` of `source` into `slot`: its matrices as the source stores them where
    /// that is the arena's format (no f32 round trip), else its f32 weights packed here (see
    /// [`packed_expert`]; biases where `bias`).
    pub fn upload_from(
        &self,
        ctx: &Context,
        slot: usize,
        source: &dyn ExpertSource,
        expert: usize,
        bias: bool,
    ) -> Result<()> {
        let shape = (self.hidden, self.inter, self.format);
        let packed = packed_expert(source, expert, shape, bias)?;
        self.upload_packed(ctx, slot, &packed)
    }

    /// Writes one expert's packed weights into `slot` (queued; visible to the next submit).
    fn upload_packed(&self, ctx: &Context, slot: usize, w: &PackedExpert) -> Result<()> {
        let (h, i) = (self.hidden, self.inter);
        write_packed(ctx, [&self.gate_up, &self.down], slot, w, h, i)?;
        if let Some((gb, db)) = &w.bias {
            let offset = (slot * 2 * i * 4) as u64;
            ctx.write(&self.gate_up_bias, offset, bytemuck::cast_slice(gb))?;
            ctx.write(
                &self.down_bias,
                (slot * h * 4) as u64,
                bytemuck::cast_slice(db),
            )?;
        }
        Ok(())
    }

    /// A layer's `[experts]` expert → slot table, every expert not resident.
    pub fn new_table(ctx: &Context, experts: usize) -> Result<wgpu::Buffer> {
        ctx.storage_with("expert slot table", &vec![INVALID; experts])
    }

    /// Replaces the expert → slot table `table` (queued; visible to the next submit).
    pub fn write_table(ctx: &Context, table: &wgpu::Buffer, slots: &[u32]) {
        ctx.queue
            .write_buffer(table, 0, bytemuck::cast_slice(slots));
    }
}

/// Writes the matrices of `w` (in its own formats, those of the buffers) into slot `slot` of
/// gate/up and down weights `[gate_up, down]` of an expert of `hidden` × `inter` (queued).
pub fn write_packed(
    ctx: &Context,
    [gate_up, down]: [&SplitWeights; 2],
    slot: usize,
    w: &PackedExpert,
    hidden: usize,
    inter: usize,
) -> Result<()> {
    let (h, i, f) = (hidden, inter, w.format);
    gate_up.write_slot(ctx, slot, |c| {
        let parts = [(c.first, c.end()), (i + c.first, i + c.end())];
        f.gate_up.select_rows(&w.gate_up, 2 * i, h, &parts)
    })?;
    down.write_slot(ctx, slot, |c| {
        f.down.select_rows(&w.down, h, i, &[(c.first, c.end())])
    })
}

/// Expert `expert` of `source` in the formats of `(hidden, inter, format)`: its matrices as
/// the source stores them where that is `format` (no f32 round trip), else its f32 weights
/// packed here. The weights are checked against the shape first (biases where `bias`): what
/// an upload writes and what the CPU computes with.
pub fn packed_expert(
    source: &dyn ExpertSource,
    expert: usize,
    (h, i, f): (usize, usize, ExpertFormat),
    bias: bool,
) -> Result<PackedExpert> {
    let what = format!("expert {expert}");
    let packed = match source.load_packed(expert, f)? {
        Some(p) => p,
        None => {
            let w = source.load(expert)?;
            w.check(&what, h, i, bias)?;
            w.pack(f, h, i)
        }
    };
    let sizes = [
        (
            "gate_up",
            packed.gate_up.len() as u64 * 4,
            f.gate_up.matrix_bytes(2 * i, h),
        ),
        (
            "down",
            packed.down.len() as u64 * 4,
            f.down.matrix_bytes(h, i),
        ),
    ];
    for (name, got, want) in sizes {
        if packed.format != f || got != want {
            return Err(Error::tensor(
                format!("{what}.{name}"),
                format!(
                    "is {got} bytes of {}, expected {want} bytes of {f}",
                    packed.format
                ),
            ));
        }
    }
    if let Some((gu, dn)) = &packed.bias
        && (gu.len() != 2 * i || dn.len() != h)
    {
        return Err(Error::tensor(
            format!("{what}.bias"),
            format!(
                "has {} and {} values, expected {} and {h}",
                gu.len(),
                dn.len(),
                2 * i
            ),
        ));
    }
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matmul::WeightFormat;
    use crate::synthetic::{Rng, random_mlp};

    #[test]
    fn expert_bytes_count_what_an_upload_writes_including_biases() {
        let (h, i) = (20, 12);
        for (format, bias) in [
            (WeightFormat::F32, false),
            (WeightFormat::F32, true),
            (WeightFormat::F16, true),
            (WeightFormat::Int8, false),
            (WeightFormat::Int4, true),
            (WeightFormat::Bf16, false),
            (WeightFormat::Mxfp4, true),
        ]
        .into_iter()
        .chain(WeightFormat::GGUF.map(|f| (f, false)))
        {
            let format = ExpertFormat::uniform(format);
            let w = random_mlp(&mut Rng::new(1), h, i, bias);
            let mut words =
                w.pack_gate_up(format.gate_up, h, i).len() + w.pack_down(format.down, h, i).len();
            if bias {
                words += w.gate_up_bias(i).len() + w.down_bias_or_zero(h).len();
            }
            assert_eq!(
                ExpertArena::expert_bytes(h, i, format, bias),
                words as u64 * 4,
                "{format:?}, bias {bias}"
            );
        }
    }

    #[test]
    fn a_mixed_arena_counts_gate_up_in_its_format_and_down_in_its_own() {
        let (h, i, slots) = (64, 32, 3);
        let format = ExpertFormat {
            gate_up: WeightFormat::Int4,
            down: WeightFormat::Int8,
        };
        let w = random_mlp(&mut Rng::new(2), h, i, false);
        let packed = w.pack(format, h, i);
        let (gu, dn) = (
            packed.gate_up.len() as u64 * 4,
            packed.down.len() as u64 * 4,
        );
        assert_eq!(gu, WeightFormat::Int4.matrix_bytes(2 * i, h));
        assert_eq!(dn, WeightFormat::Int8.matrix_bytes(h, i));
        assert_ne!(
            gu + dn,
            ExpertArena::expert_bytes(h, i, ExpertFormat::uniform(WeightFormat::Int4), false)
        );
        assert_eq!(ExpertArena::expert_bytes(h, i, format, false), gu + dn);
        let bytes = ExpertArena::buffer_bytes(h, i, slots, format, false, u64::MAX).unwrap();
        assert_eq!(bytes[0], ("expert gate_up slots", slots as u64 * gu));
        assert_eq!(bytes[1], ("expert down slots", slots as u64 * dn));
    }
}
