//! A GGUF file as a [`Checkpoint`]: every tensor under its Hugging Face name
//! ([`gguf_names`](super::gguf_names)), dequantised to f32 only when read that way, and the
//! routed experts' blocks handed over as they are stored for the GPU to decode.

use std::collections::HashMap;
use std::path::Path;

use safetensors::Dtype;

use super::checkpoint::{Checkpoint, TensorEntry, first_non_finite};
use super::config::ModelConfig;
use super::gguf_config::hf_config;
use super::gguf_names::{GgufView, hf_views, join_kv_b, unpermute_rows};
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufFile, dequantize};

impl Checkpoint {
    /// Opens a GGUF file (every part of a split one) and names its tensors as the Hugging Face
    /// checkpoint of the same model would.
    pub fn open_gguf(path: &Path) -> Result<Self> {
        let g = GgufFile::open(path)?;
        let cfg = ModelConfig::from_json(&hf_config(&g)?)?;
        let mut tensors = HashMap::new();
        for (hf, view) in hf_views(&g, &cfg)? {
            let info = g.tensor(view.tensor())?;
            let mut shape = info.shape();
            match &view {
                GgufView::Expert(..) => {
                    if !matches!(shape.len(), 2 | 3) {
                        return Err(Error::tensor(
                            view.tensor(),
                            format!(
                                "has shape {shape:?}; stacked experts are [E, rows, k] (biases \
                                 [E, n])"
                            ),
                        ));
                    }
                    shape.remove(0);
                }
                GgufView::Row(_) => shape.insert(0, 1),
                GgufView::KvB(k_b, v_b) => shape = kv_b_shape(&g, k_b, v_b)?,
                GgufView::Whole(_) | GgufView::Unpermuted(..) => {}
            }
            let entry = TensorEntry {
                file: 0,
                dtype: Dtype::F32,
                shape,
                start: 0,
                end: 0,
                gguf: Some(view),
            };
            tensors.insert(hf, entry);
        }
        Ok(Self {
            dir: path.to_path_buf(),
            shards: Vec::new(),
            tensors,
            gguf: Some(g),
        })
    }

    /// The GGUF file behind the checkpoint, where it is one.
    pub fn gguf(&self) -> Option<&GgufFile> {
        self.gguf.as_ref()
    }

    /// The stored type and bytes of a GGUF checkpoint's tensor `name` (one expert's slice for
    /// a routed expert), to hand to the GPU as they are; `None` for safetensors tensors and for
    /// views that are rearranged on reading.
    pub fn gguf_block_bytes(&self, name: &str) -> Result<Option<(GgmlType, &[u8])>> {
        let (Some(g), Some(view)) = (&self.gguf, &self.entry(name)?.gguf) else {
            return Ok(None);
        };
        let ty = g.tensor(view.tensor())?.ty;
        Ok(match view {
            GgufView::Whole(t) => Some((ty, g.tensor_bytes(t)?)),
            GgufView::Expert(t, x) => Some((ty, g.expert_bytes(t, *x)?)),
            GgufView::Row(_) | GgufView::Unpermuted(..) | GgufView::KvB(..) => None,
        })
    }

    /// How tensor `name` is stored: its dtype (a GGUF checkpoint's: the GGUF type) and its
    /// bytes in the files.
    pub fn stored(&self, name: &str) -> Result<(String, u64)> {
        let e = self.entry(name)?;
        let (Some(g), Some(view)) = (&self.gguf, &e.gguf) else {
            return Ok((format!("{:?}", e.dtype), (e.end - e.start) as u64));
        };
        let info = g.tensor(view.tensor())?;
        let bytes = match view {
            GgufView::Expert(t, x) => g.expert_bytes(t, *x)?.len(),
            GgufView::KvB(k_b, v_b) => g.tensor(k_b)?.byte_len() + g.tensor(v_b)?.byte_len(),
            GgufView::Whole(_) | GgufView::Row(_) | GgufView::Unpermuted(..) => info.byte_len(),
        };
        Ok((info.ty.to_string(), bytes as u64))
    }

    /// The f32 values of a GGUF view; NaN or infinity is an error naming the tensor.
    pub(super) fn gguf_f32(&self, view: &GgufView) -> Result<Vec<f32>> {
        let g = self.gguf.as_ref().ok_or_else(|| {
            Error::tensor(view.tensor(), "is a GGUF view in a safetensors checkpoint")
        })?;
        let info = g.tensor(view.tensor())?;
        match view {
            GgufView::Whole(t) | GgufView::Row(t) => g.tensor_f32(t),
            GgufView::Unpermuted(t, heads) => {
                let k = info.dims.first().copied().unwrap_or(1) as usize;
                let rows = info.elements() / k.max(1);
                if !rows.is_multiple_of(2 * heads.max(&1)) {
                    return Err(Error::tensor(
                        t,
                        format!("has {rows} rows, not {heads} heads of an even size"),
                    ));
                }
                Ok(unpermute_rows(&g.tensor_f32(t)?, *heads, k))
            }
            GgufView::KvB(k_b, v_b) => {
                let shape = kv_b_shape(g, k_b, v_b)?;
                let heads = g.tensor(k_b)?.shape()[0];
                let (k, v) = (g.tensor_f32(k_b)?, g.tensor_f32(v_b)?);
                Ok(join_kv_b(&k, &v, heads, shape[1]))
            }
            GgufView::Expert(t, x) => {
                let bytes = g.expert_bytes(t, *x)?;
                let values = info.elements() / info.dims.last().copied().unwrap_or(1) as usize;
                let w = dequantize(info.ty, bytes, values)?;
                if let Some(i) = first_non_finite(&w) {
                    return Err(Error::tensor(
                        t,
                        format!("expert {x} value {i} is {}; weights must be finite", w[i]),
                    ));
                }
                Ok(w)
            }
        }
    }
}

/// The `[heads · (nope + v), kv_lora]` shape of MLA's kv_b_proj from `k_b` `[heads, kv_lora,
/// nope]` and `v_b` `[heads, v, kv_lora]`; an error naming them where they disagree.
fn kv_b_shape(g: &GgufFile, k_b: &str, v_b: &str) -> Result<Vec<usize>> {
    let (k, v) = (g.tensor(k_b)?.shape(), g.tensor(v_b)?.shape());
    match (k.as_slice(), v.as_slice()) {
        ([h, r, nope], [hv, vd, rv]) if h == hv && r == rv => Ok(vec![h * (nope + vd), *r]),
        _ => Err(Error::tensor(
            k_b,
            format!(
                "has shape {k:?} and {v_b} {v:?}; expected [heads, kv_lora, nope] and [heads, v, kv_lora]"
            ),
        )),
    }
}
