//! VRAM slots for routed experts: four buffers (gate/up, down and their biases) with one
//! expert per slot, and the expert → slot table the grouped GEMMs read.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::matmul::WeightFormat;
use crate::spec::INVALID;
use crate::spec::weights::{ExpertSource, ExpertWeights, PackedExpert};

/// VRAM slots for the expert weights of one layer, and the table mapping experts to slots.
pub struct ExpertArena {
    /// Experts the arena holds at once.
    pub slots: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Expert width.
    pub inter: usize,
    /// Storage format of the weights.
    pub format: WeightFormat,
    /// [slots, 2·inter, hidden (padded)] gate rows then up rows, each slot ending in its scale
    /// block in the quantised formats (see `kernels::format`).
    pub gate_up: wgpu::Buffer,
    /// [slots, hidden, inter (padded)], scales likewise
    pub down: wgpu::Buffer,
    /// [slots, 2·inter]
    pub gate_up_bias: wgpu::Buffer,
    /// [slots, hidden]
    pub down_bias: wgpu::Buffer,
    /// `[experts]` slot of each expert, INVALID when not resident.
    pub table: wgpu::Buffer,
}

impl ExpertArena {
    /// Allocates `slots` slots for a layer of `experts` experts, none resident; without `bias`
    /// the bias buffers hold one zero slot.
    pub fn new(
        ctx: &Context,
        hidden: usize,
        inter: usize,
        experts: usize,
        slots: usize,
        format: WeightFormat,
        bias: bool,
    ) -> Result<Self> {
        let [gate_up, down, gate_up_bias, down_bias, _table] =
            Self::buffer_bytes(hidden, inter, experts, slots, format, bias);
        let storage = |(label, bytes): (&str, u64)| ctx.storage(label, bytes);
        let (gate_up, down) = (storage(gate_up)?, storage(down)?);
        let (gate_up_bias, down_bias) = (storage(gate_up_bias)?, storage(down_bias)?);
        let table = ctx.storage_with("expert slot table", &vec![INVALID; experts])?;
        Ok(Self {
            slots,
            hidden,
            inter,
            format,
            gate_up,
            down,
            gate_up_bias,
            down_bias,
            table,
        })
    }

    /// Bytes of the arena's buffers, by name, in allocation order: gate/up and down slots,
    /// their biases (one zero slot without `bias`) and the slot table.
    pub fn buffer_bytes(
        hidden: usize,
        inter: usize,
        experts: usize,
        slots: usize,
        format: WeightFormat,
        bias: bool,
    ) -> [(&'static str, u64); 5] {
        let bias_slots = if bias { slots } else { 1 };
        [
            (
                "expert gate_up slots",
                slots as u64 * format.matrix_bytes(2 * inter, hidden),
            ),
            (
                "expert down slots",
                slots as u64 * format.matrix_bytes(hidden, inter),
            ),
            ("expert gate_up bias", (bias_slots * 2 * inter * 4) as u64),
            ("expert down bias", (bias_slots * hidden * 4) as u64),
            ("expert slot table", (experts * 4) as u64),
        ]
    }

    /// Bytes one expert occupies in VRAM (and crosses the bus to get there): its matrices in
    /// `format`, quantisation scales included, and its f32 biases.
    pub fn expert_bytes(hidden: usize, inter: usize, format: WeightFormat, bias: bool) -> u64 {
        let biases = if bias {
            (2 * inter + hidden) as u64 * 4
        } else {
            0
        };
        format.matrix_bytes(2 * inter, hidden) + format.matrix_bytes(hidden, inter) + biases
    }

    /// Writes one expert's weights into `slot` (queued; visible to the next submit).
    pub fn upload(&self, ctx: &Context, slot: usize, w: &ExpertWeights) {
        self.upload_packed(ctx, slot, &w.pack(self.format, self.hidden, self.inter));
    }

    /// Expert `expert` of `source` into `slot`: its matrices as the source stores them where
    /// that is the arena's format (no f32 round trip), else its f32 weights packed here. The
    /// weights are checked against the arena's shape first (biases where `bias`).
    pub fn upload_from(
        &self,
        ctx: &Context,
        slot: usize,
        source: &dyn ExpertSource,
        expert: usize,
        bias: bool,
    ) -> Result<()> {
        let (h, i, f) = (self.hidden, self.inter, self.format);
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
                f.matrix_bytes(2 * i, h),
            ),
            ("down", packed.down.len() as u64 * 4, f.matrix_bytes(h, i)),
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
        self.upload_packed(ctx, slot, &packed);
        Ok(())
    }

    /// Writes one expert's packed weights into `slot` (queued; visible to the next submit).
    fn upload_packed(&self, ctx: &Context, slot: usize, w: &PackedExpert) {
        let (h, i, f) = (self.hidden, self.inter, self.format);
        let q = &ctx.queue;
        q.write_buffer(
            &self.gate_up,
            slot as u64 * f.matrix_bytes(2 * i, h),
            bytemuck::cast_slice(&w.gate_up),
        );
        q.write_buffer(
            &self.down,
            slot as u64 * f.matrix_bytes(h, i),
            bytemuck::cast_slice(&w.down),
        );
        if let Some((gb, db)) = &w.bias {
            q.write_buffer(
                &self.gate_up_bias,
                (slot * 2 * i * 4) as u64,
                bytemuck::cast_slice(gb),
            );
            q.write_buffer(
                &self.down_bias,
                (slot * h * 4) as u64,
                bytemuck::cast_slice(db),
            );
        }
    }

    /// Replaces the expert → slot table.
    pub fn write_table(&self, ctx: &Context, table: &[u32]) {
        ctx.queue
            .write_buffer(&self.table, 0, bytemuck::cast_slice(table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        ] {
            let w = random_mlp(&mut Rng::new(1), h, i, bias);
            let mut words = w.pack_gate_up(format, h, i).len() + w.pack_down(format, h, i).len();
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
}
