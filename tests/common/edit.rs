//! Copies of fixture checkpoints with edited tensors or config, in temporary directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use moe_gpu::model::Checkpoint;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::Value;

/// One tensor as stored: dtype, shape, little-endian bytes.
#[derive(Clone)]
pub struct Raw {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Raw {
    pub fn f32(shape: Vec<usize>, v: &[f32]) -> Raw {
        Raw {
            dtype: Dtype::F32,
            shape,
            data: bytemuck::cast_slice(v).to_vec(),
        }
    }
}

pub type Tensors = BTreeMap<String, Raw>;

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "moe-gpu-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn read_tensors(dir: &Path) -> Tensors {
    let ck = Checkpoint::open(dir).unwrap();
    ck.names()
        .map(|n| {
            let e = ck.entry(n).unwrap();
            (
                n.to_string(),
                Raw {
                    dtype: e.dtype,
                    shape: e.shape.clone(),
                    data: ck.bytes(n).unwrap().to_vec(),
                },
            )
        })
        .collect()
}

pub fn write_tensors(path: &Path, t: &Tensors) {
    let views: Vec<(String, TensorView)> = t
        .iter()
        .map(|(n, r)| {
            (
                n.clone(),
                TensorView::new(r.dtype, r.shape.clone(), &r.data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

pub fn read_config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

pub fn write_config(dir: &Path, v: &Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(v).unwrap(),
    )
    .unwrap();
}

/// Copies model dir `src` to a temp dir, applying `edit_tensors` and `edit_config`.
pub fn edited_model(
    src: &Path,
    tag: &str,
    edit_tensors: impl FnOnce(&mut Tensors),
    edit_config: impl FnOnce(&mut Value),
) -> PathBuf {
    let dst = temp_dir(tag);
    let mut t = read_tensors(src);
    edit_tensors(&mut t);
    write_tensors(&dst.join("model.safetensors"), &t);
    let mut c = read_config(src);
    edit_config(&mut c);
    write_config(&dst, &c);
    dst
}

/// Rewrites the JSON header of safetensors file `path` with `edit`, keeping the data bytes as
/// they are: for headers no writer would produce (duplicate keys, offsets past the end).
pub fn edit_header(path: &Path, edit: impl FnOnce(&str) -> String) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap().trim_end();
    let new = edit(header);
    let mut out = (new.len() as u64).to_le_bytes().to_vec();
    out.extend(new.as_bytes());
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}
