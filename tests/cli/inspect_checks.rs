//! `moe inspect` checks what it reports: every tensor's shape and dtype against config.json,
//! per-layer expert counts of pruned checkpoints, sizes that do not overflow, and with
//! `--verify` the NaN and infinite values of every tensor.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::common::edit::{Tensors, edited_model};
use crate::common::fixtures::dir;
use crate::run::stderr;

fn inspect(model: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(["inspect", "--model", model.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

fn olmoe() -> PathBuf {
    dir("hf-tiny", "olmoe").join("model")
}

fn edited(tag: &str, edit: impl FnOnce(&mut Tensors), config: impl FnOnce(&mut Value)) -> PathBuf {
    edited_model(&olmoe(), tag, edit, config)
}

/// Sets f32 value `at` of tensor `name` to `v`.
fn poke(t: &mut Tensors, name: &str, at: usize, v: f32) {
    t.get_mut(name).unwrap().data[at * 4..at * 4 + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn inspect_refuses_a_transposed_or_missing_tensor_and_warns_of_extra_ones() {
    let down = "model.layers.0.mlp.experts.3.down_proj.weight";
    let d = edited(
        "transposed",
        |t| t.get_mut(down).unwrap().shape = vec![32, 64],
        |_| {},
    );
    let o = inspect(&d, &[]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains(down) && e.contains("[32, 64]") && e.contains("expected [64, 32]"),
        "{e}"
    );

    let norm = "model.layers.1.post_attention_layernorm.weight";
    let d = edited("missing", |t| drop(t.remove(norm)), |_| {});
    let o = inspect(&d, &[]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains(norm) && e.contains("missing"),
        "{e}"
    );

    let extra = "model.layers.0.mlp.unused.weight";
    let d = edited(
        "extra",
        |t| drop(t.insert(extra.into(), t[norm].clone())),
        |_| {},
    );
    let o = inspect(&d, &[]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("warning") && e.contains(extra), "{e}");
}

#[test]
fn inspect_reports_the_experts_of_each_layer_after_per_layer_pruning() {
    // Layer 1 keeps 12 of 16 experts: its router loses rows, its experts 12..15 go.
    let router = "model.layers.1.mlp.gate.weight";
    let d = edited(
        "pruned",
        |t| {
            t.retain(|n, _| {
                !(12..16).any(|x| n.starts_with(&format!("model.layers.1.mlp.experts.{x}.")))
            });
            let r = t.get_mut(router).unwrap();
            r.shape = vec![12, 64];
            r.data.truncate(12 * 64 * 4);
        },
        |c| c["moe_gpu_experts_per_layer"] = json!([16, 12]),
    );
    let o = inspect(&d, &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["experts_per_layer"], json!([16, 12]));
    let o = inspect(&d, &[]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("layer 0: 16, layer 1: 12"), "{s}");
}

#[test]
fn inspect_refuses_a_hidden_size_whose_sizes_overflow() {
    for huge in [1_000_000_000u64, 1_000_000_000_000] {
        let d = edited("huge", |_| {}, |c| c["hidden_size"] = json!(huge));
        let o = inspect(&d, &[]);
        let e = stderr(&o);
        // An error exit (1), not a panic (101) or an abort on allocation.
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(
            e.contains("hidden_size") && e.contains(&huge.to_string()),
            "{e}"
        );
    }
}

#[test]
fn inspect_verify_names_the_tensors_with_nan_or_infinity() {
    let o = inspect(&olmoe(), &["--verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("every value is finite"));

    let norm = "model.norm.weight";
    let up = "model.layers.0.mlp.experts.1.up_proj.weight";
    let d = edited(
        "nan",
        |t| {
            poke(t, norm, 3, f32::NAN);
            poke(t, up, 1500, f32::INFINITY);
            poke(t, up, 700, f32::NAN);
        },
        |_| {},
    );
    // Without --verify nothing is read.
    assert!(inspect(&d, &[]).status.success());
    let o = inspect(&d, &["--verify"]);
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains(&format!(
            "tensor {norm}: 1 NaN or infinite values, the first at flat index 3"
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "tensor {up}: 2 NaN or infinite values, the first at flat index 700"
        )),
        "{e}"
    );
    let o = inspect(&d, &["--verify", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["non_finite"].as_array().unwrap().len(), 2);
}
