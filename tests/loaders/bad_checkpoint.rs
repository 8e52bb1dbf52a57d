//! Malformed safetensors files and sharded indexes: each is an error naming the file and the
//! tensor or entry at fault, never a silently accepted checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moe_gpu::kernels::matmul::WeightFormat;
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec};
use moe_gpu::moe::MoeLayer;

use crate::common;
use crate::common::edit::{
    Raw, edit_header, edited_model, read_config, read_header, read_tensors, temp_dir, write_config,
    write_tensors,
};
use crate::common::fixtures::dir;

fn model(arch: &str) -> PathBuf {
    dir("hf-tiny", arch).join("model")
}

fn err_of<T>(r: moe_gpu::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// Loads layer 0 of a model dir the way `moe block` does.
fn load_layer(d: &Path, layer: usize) -> moe_gpu::Result<MoeLayer> {
    let cfg = ModelConfig::load(d)?;
    let ckpt = Arc::new(Checkpoint::open(d)?);
    let w = load_moe_weights(&ckpt, &cfg, layer)?;
    MoeLayer::new(
        common::ctx(),
        moe_layer_spec(&cfg, WeightFormat::F32),
        &w,
        8,
    )
}

/// A copy of the mixtral fixture whose model.safetensors header went through `edit`.
fn edited_header(tag: &str, edit: impl FnOnce(&str) -> String) -> PathBuf {
    let d = edited_model(&model("mixtral"), tag, |_| {}, |_| {});
    edit_header(&d.join("model.safetensors"), edit);
    d
}

const ROUTER: &str = "model.layers.0.block_sparse_moe.gate.weight";

/// The header entry of `name` with `change` applied, as JSON text.
fn entry_with(header: &str, name: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let v: serde_json::Value = serde_json::from_str(header).unwrap();
    let mut e = v[name].clone();
    change(&mut e);
    e.to_string()
}

#[test]
fn duplicated_header_key_names_the_file_and_tensor() {
    let d = edited_header("dupkey", |h| {
        // A second copy of the router entry, first in the header: serde keeps the last one.
        format!(
            "{{\"{ROUTER}\":{},{}",
            entry_with(h, ROUTER, |_| {}),
            &h[1..]
        )
    });
    let e = err_of(Checkpoint::open(&d));
    assert!(
        e.contains("model.safetensors") && e.contains(ROUTER) && e.contains("twice"),
        "{e}"
    );
}

#[test]
fn shape_that_does_not_match_the_bytes_names_the_tensor() {
    let d = edited_header("shapebytes", |h| {
        let mut v: serde_json::Value = serde_json::from_str(h).unwrap();
        v[ROUTER]["shape"][0] = 3.into();
        v.to_string()
    });
    let e = err_of(Checkpoint::open(&d));
    assert!(e.contains(ROUTER) && e.contains("bytes"), "{e}");
}

#[test]
fn offsets_past_the_end_name_the_right_tensor() {
    let path = model("mixtral").join("model.safetensors");
    let len = std::fs::metadata(&path).unwrap().len();
    let header = read_header(&path);
    // The tensor stored first: moving it leaves a hole that the next tensor gets blamed for.
    let first = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .find(|(_, v)| v["data_offsets"][0] == 0)
        .map(|(k, _)| k.clone())
        .unwrap();
    let d = edited_header("offsets", |h| {
        let mut v: serde_json::Value = serde_json::from_str(h).unwrap();
        let size = v[&first]["data_offsets"][1].as_u64().unwrap();
        v[&first]["data_offsets"] = serde_json::json!([len, len + size]);
        v.to_string()
    });
    let e = err_of(Checkpoint::open(&d));
    assert!(e.contains(&first) && e.contains("past the end"), "{e}");
}

#[test]
fn directory_in_place_of_the_checkpoint_is_named() {
    let d = temp_dir("isdir");
    std::fs::create_dir(d.join("model.safetensors")).unwrap();
    let e = err_of(Checkpoint::open(&d));
    assert!(
        e.contains("model.safetensors") && e.contains("is a directory"),
        "{e}"
    );
}

/// A two-shard copy of the mixtral fixture: every tensor in shard 1 except `extra`, which is
/// also in shard 2, with the index's weight_map written as `map` makes it (raw JSON text).
fn two_shards(tag: &str, extra: &str, map: impl FnOnce(&[String]) -> String) -> PathBuf {
    let d = temp_dir(tag);
    two_shards_in(&d, extra, map);
    d
}

/// [`two_shards`] written into the existing directory `d`.
fn two_shards_in(d: &Path, extra: &str, map: impl FnOnce(&[String]) -> String) {
    let src = model("mixtral");
    let all = read_tensors(&src);
    let mut second = all.clone();
    second.retain(|k, _| k == extra);
    write_tensors(&d.join("a.safetensors"), &all);
    write_tensors(&d.join("b.safetensors"), &second);
    let names: Vec<String> = all.keys().cloned().collect();
    let index = format!("{{\"metadata\":{{}},\"weight_map\":{{{}}}}}", map(&names));
    std::fs::write(d.join("model.safetensors.index.json"), index).unwrap();
    write_config(d, &read_config(&src));
}

fn entries(names: &[String], file: &str) -> Vec<String> {
    names
        .iter()
        .map(|n| format!("\"{n}\":\"{file}\""))
        .collect()
}

#[test]
fn tensor_in_two_shards_names_the_tensor_and_both_shards() {
    let d = two_shards("twoshards", ROUTER, |names| {
        let mut m = entries(names, "a.safetensors");
        m.push(format!("\"{ROUTER}\":\"b.safetensors\""));
        m.join(",")
    });
    // Through the index, which names it twice.
    let e = err_of(Checkpoint::open(&d));
    assert!(
        e.contains(ROUTER) && e.contains("a.safetensors") && e.contains("b.safetensors"),
        "{e}"
    );
    // Through the shard files, with an index that names it once.
    let d = two_shards("twofiles", ROUTER, |names| {
        let mut m = entries(names, "a.safetensors");
        m.push("\"unused\":\"b.safetensors\"".into());
        m.join(",")
    });
    let e = err_of(Checkpoint::open(&d));
    assert!(
        e.contains(ROUTER) && e.contains("a.safetensors") && e.contains("b.safetensors"),
        "{e}"
    );
}

#[test]
fn weight_map_leaving_the_model_directory_is_an_error() {
    // outer/x.safetensors is a whole checkpoint; the model dir is outer/m/n.
    let outer = temp_dir("outside");
    let x = outer.join("x.safetensors");
    std::fs::copy(model("mixtral").join("model.safetensors"), &x).unwrap();
    for (i, file) in [
        "../../x.safetensors".to_string(),
        x.display().to_string(),
        "sub/x.safetensors".into(),
    ]
    .into_iter()
    .enumerate()
    {
        let d = outer.join(format!("m{i}/n"));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::copy(&x, d.join("sub/x.safetensors")).unwrap();
        two_shards_in(&d, ROUTER, |names| {
            let mut m = entries(&names[1..], "a.safetensors");
            m.push(format!("\"{}\":\"{file}\"", names[0]));
            m.join(",")
        });
        let e = err_of(Checkpoint::open(&d));
        assert!(
            e.contains(&file) && e.contains("inside the model directory"),
            "{file}: {e}"
        );
    }
}

#[test]
fn nan_and_inf_weights_name_the_tensor_and_index() {
    let name = "model.layers.0.block_sparse_moe.experts.2.w1.weight";
    let d = edited_model(
        &model("mixtral"),
        "nanw",
        |t| {
            let r = t.get_mut(name).unwrap();
            r.data[5 * 4..6 * 4].copy_from_slice(&f32::NAN.to_le_bytes());
        },
        |_| {},
    );
    let e = err_of(load_layer(&d, 0));
    assert!(
        e.contains(name) && e.contains("NaN") && e.contains("5"),
        "{e}"
    );
    // A BF16 router with +Inf at index 7.
    let d = edited_model(
        &model("mixtral"),
        "infw",
        |t| {
            let r = t.get(ROUTER).unwrap();
            let mut v: Vec<f32> = bytemuck::cast_slice(&r.data).to_vec();
            v[7] = f32::INFINITY;
            let bits: Vec<u16> = v
                .iter()
                .map(|x| half::bf16::from_f32(*x).to_bits())
                .collect();
            let shape = r.shape.clone();
            t.insert(
                ROUTER.into(),
                Raw {
                    dtype: safetensors::Dtype::BF16,
                    shape,
                    data: bytemuck::cast_slice(&bits).to_vec(),
                },
            );
        },
        |_| {},
    );
    let e = err_of(load_layer(&d, 0));
    assert!(
        e.contains(ROUTER) && e.contains("inf") && e.contains("7"),
        "{e}"
    );
}
