//! Access to the Hugging Face reference fixtures in tests/fixtures/<set>/<arch>/.
#![allow(dead_code)]

use std::path::PathBuf;

use moe_gpu::model::Checkpoint;

/// The fixture sets: the base shapes and a held-out set with non-power-of-two shapes.
pub const SETS: [&str; 2] = ["hf-tiny", "hf-tiny-alt"];

pub fn dir(set: &str, arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set)
        .join(arch)
}

pub struct Fixture {
    pub model_dir: PathBuf,
    pub expected: Checkpoint,
}

impl Fixture {
    pub fn open(set: &str, arch: &str) -> Fixture {
        let d = dir(set, arch);
        let expected = Checkpoint::open_file(&d.join("expected.safetensors"))
            .unwrap_or_else(|e| panic!("{set}/{arch}: {e}"));
        Fixture {
            model_dir: d.join("model"),
            expected,
        }
    }

    pub fn f32(&self, name: &str) -> Vec<f32> {
        self.expected
            .f32_any(name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn ids(&self, name: &str) -> Vec<u32> {
        self.expected
            .i64_any(name)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.expected.contains(name)
    }

    /// Layers L for which `{prefix}L.{suffix}` exists, ascending.
    pub fn layers_with(&self, prefix: &str, suffix: &str) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .expected
            .names()
            .filter_map(|n| n.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok())
            .collect();
        v.sort();
        v
    }
}
