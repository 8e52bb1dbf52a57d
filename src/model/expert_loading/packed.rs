//! Experts handed to the GPU in the checkpoint's own encoding, without a trip through f32: a
//! GGUF file's blocks in the formats that hold their types ([`pack_gguf`](crate::kernels::gguf_formats::pack_gguf)), a gpt-oss
//! release's MXFP4 blocks and scales for `mxfp4`, and bf16 per-expert matrices for `bf16`
//! (whose rows, when their length is a multiple of 8, are the packed rows byte for byte).

use safetensors::Dtype;

use super::formats::gguf_packed;
use super::{CheckpointExperts, Layout};
use crate::error::{Error, Result};
use crate::kernels::matmul::{ExpertFormat, WeightFormat};
use crate::kernels::mxfp4::{E8M0_NAN, pack_mxfp4_rows};
use crate::spec::weights::PackedExpert;

impl CheckpointExperts {
    /// Expert `x` packed in `format` straight from the mapped bytes, where the layout allows
    /// it (both matrices in one format); `None` otherwise.
    pub(super) fn packed(&self, x: usize, format: ExpertFormat) -> Result<Option<PackedExpert>> {
        if let (Some(_), Layout::PerExpert(g, u, d) | Layout::PerExpertBiased(g, u, d)) =
            (self.ckpt.gguf(), self.layout)
        {
            return self.gguf(x, [g, u, d], format);
        }
        if !format.is_uniform() {
            return Ok(None);
        }
        match (self.layout, format.gate_up) {
            (Layout::Mxfp4, WeightFormat::Mxfp4) => self.mxfp4(x).map(Some),
            (Layout::PerExpert(g, u, d), WeightFormat::Bf16)
                if self.hidden.is_multiple_of(8) && self.inter.is_multiple_of(8) =>
            {
                self.bf16(x, [g, u, d])
            }
            _ => Ok(None),
        }
    }

    /// Expert `x` of a GGUF checkpoint, its matrices `names` repacked without loss where
    /// `format` is what holds their types; `None` otherwise (then they are converted).
    fn gguf(
        &self,
        x: usize,
        names: [&str; 3],
        format: ExpertFormat,
    ) -> Result<Option<PackedExpert>> {
        let names = names.map(|n| format!("{}{x}.{n}.weight", self.prefix));
        let (h, i) = (self.hidden, self.inter);
        let Some(mut packed) = gguf_packed(&self.ckpt, &names, h, i, Some(format))? else {
            return Ok(None);
        };
        if let Layout::PerExpertBiased(..) = self.layout {
            let (mut gate_up_bias, up_bias, down_bias) = self.biases(x)?;
            gate_up_bias.extend(up_bias);
            packed.bias = Some((gate_up_bias, down_bias));
        }
        Ok(Some(packed))
    }

    fn mxfp4(&self, x: usize) -> Result<PackedExpert> {
        let format = WeightFormat::Mxfp4;
        let (p, h, i, c) = (&self.prefix, self.hidden, self.inter, &self.ckpt);
        let gu_scales = self.mxfp4_scales("gate_up_proj", x)?;
        let gu_blocks = c.u8_slice(&format!("{p}gate_up_proj_blocks"), x)?;
        // The checkpoint interleaves gate and up rows; the GPU wants gate rows, then up rows.
        let row = |r: usize| {
            (
                &gu_blocks[r * h / 2..(r + 1) * h / 2],
                &gu_scales[r * h / 32..(r + 1) * h / 32],
            )
        };
        let mut gate_up = Vec::with_capacity(format.matrix_bytes(2 * i, h) as usize / 4);
        let rows = (0..i)
            .map(|r| row(2 * r))
            .chain((0..i).map(|r| row(2 * r + 1)));
        pack_mxfp4_rows(&mut gate_up, rows, h);
        let dn_scales = self.mxfp4_scales("down_proj", x)?;
        let dn_blocks = c.u8_slice(&format!("{p}down_proj_blocks"), x)?;
        let mut down = Vec::with_capacity(format.matrix_bytes(h, i) as usize / 4);
        let rows = dn_blocks.chunks(i / 2).zip(dn_scales.chunks(i / 32));
        pack_mxfp4_rows(&mut down, rows, i);
        let (gate_bias, up_bias, down_bias) = self.biases(x)?;
        let mut gate_up_bias = gate_bias;
        gate_up_bias.extend(up_bias);
        Ok(PackedExpert {
            format: ExpertFormat::uniform(format),
            gate_up,
            down,
            bias: Some((gate_up_bias, down_bias)),
        })
    }

    /// Expert `x`'s e8m0 scales of `{name}_scales`; 255 (NaN in e8m0) is an error naming the
    /// tensor, never a NaN output.
    pub(super) fn mxfp4_scales(&self, name: &str, x: usize) -> Result<&[u8]> {
        let tensor = format!("{}{name}_scales", self.prefix);
        let scales = self.ckpt.u8_slice(&tensor, x)?;
        if let Some(at) = scales.iter().position(|&e| e == E8M0_NAN) {
            return Err(Error::tensor(
                tensor,
                format!("expert {x} has the e8m0 scale 255 (NaN) at group {at}"),
            ));
        }
        Ok(scales)
    }

    /// The gate, up and down matrices `names` of expert `x` as the file's bf16 words (the
    /// shapes were checked at construction), or `None` where one is not bf16. Non-finite
    /// values are errors, as in the f32 path.
    fn bf16(&self, x: usize, names: [&str; 3]) -> Result<Option<PackedExpert>> {
        let names = names.map(|n| format!("{}{x}.{n}.weight", self.prefix));
        for name in &names {
            if self.ckpt.entry(name)?.dtype != Dtype::BF16 {
                return Ok(None);
            }
        }
        let [gate, up, down] = names.map(|n| self.bf16_words(&n));
        let mut gate_up = gate?;
        gate_up.extend(up?);
        Ok(Some(PackedExpert {
            format: ExpertFormat::uniform(WeightFormat::Bf16),
            gate_up,
            down: down?,
            bias: None,
        }))
    }

    /// A bf16 tensor's bytes as u32 words (element 2m in the low half of word m).
    fn bf16_words(&self, name: &str) -> Result<Vec<u32>> {
        let bytes = self.ckpt.bytes(name)?;
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let non_finite = |w: u32| w & 0x7f80 == 0x7f80 || w & 0x7f80_0000 == 0x7f80_0000;
        if let Some(m) = words.iter().position(|&w| non_finite(w)) {
            let half = if words[m] & 0x7f80 == 0x7f80 { 0 } else { 1 };
            let value = f32::from_bits((words[m] >> (16 * half)) << 16);
            return Err(Error::tensor(
                name,
                format!(
                    "value {} (flat index) is {value}; weights must be finite",
                    2 * m + half
                ),
            ));
        }
        Ok(words)
    }
}
