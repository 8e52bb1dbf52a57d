//! GGUF blocks repacked for the GPU (`pack_gguf`) decode inside the matmul kernels to exactly
//! `gguf::dequantize`'s values: a matmul of the identity reads every weight back, for every
//! type, random codes and scales (subnormal f16 scales included), in each kernel the autotuner
//! may pick (register tiles, shared-memory tiles, the decode matvec: the first tiling of each),
//! with the rows split over three bindings.

use moe_gpu::gguf::{GgmlType, dequantize};
use moe_gpu::kernels::gguf_formats::pack_gguf;
use moe_gpu::kernels::matmul::{Matmul, MatmulBuffers, MatmulSpec};
use moe_gpu::kernels::row_split::SplitWeights;
use moe_gpu::synthetic::Rng;

use crate::common;
use crate::common::matmul::{all_tilings, limit_for_parts, split_shape};

/// `rows` rows of `k` values of `ty`: random bytes, finite f16 scales (one in eight
/// subnormal), MXFP4 exponents below 255; F32, F16 and BF16 as random normals.
fn random_matrix(rng: &mut Rng, ty: GgmlType, rows: usize, k: usize) -> Vec<u8> {
    let values = rng.normals(rows * k, 1.0);
    match ty {
        GgmlType::F32 => return values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 | GgmlType::BF16 => {
            return values
                .iter()
                .flat_map(|&v| match ty {
                    GgmlType::F16 => half::f16::from_f32(v).to_le_bytes(),
                    _ => half::bf16::from_f32(v).to_le_bytes(),
                })
                .collect();
        }
        _ => {}
    }
    let blocks = rows * k / ty.block_values();
    let mut bytes: Vec<u8> = (0..blocks * ty.block_bytes())
        .map(|_| rng.below(256) as u8)
        .collect();
    for block in bytes.chunks_exact_mut(ty.block_bytes()) {
        if ty == GgmlType::MXFP4 {
            block[0] = 100 + rng.below(40) as u8;
        }
        for &at in ty.f16_scale_offsets() {
            let scale = if rng.below(8) == 0 { 1e-6 } else { 0.05 };
            let s = half::f16::from_f32(rng.normal() * scale);
            block[at..at + 2].copy_from_slice(&s.to_le_bytes());
        }
    }
    bytes
}

#[test]
fn every_gguf_type_decodes_in_every_kernel_to_gguf_py_values() {
    let ctx = common::ctx();
    let mut rng = Rng::new(15);
    let mut bad = Vec::new();
    let mut tilings = all_tilings();
    let mut seen = std::collections::HashSet::new();
    tilings.retain(|t| seen.insert(t.variant));
    assert_eq!(tilings.len(), 3, "one tiling per kernel: {tilings:?}");
    for ty in GgmlType::ALL {
        // Two blocks a row (three 32-value groups for the float types and 32-value blocks).
        let (n, k) = (7, (2 * ty.block_values()).max(96));
        let bytes = random_matrix(&mut rng, ty, n, k);
        let want = dequantize(ty, &bytes, n * k).unwrap();
        let (format, packed) = pack_gguf(ty, &bytes, n, k).unwrap();
        let spec = MatmulSpec {
            format,
            ..MatmulSpec::dense(n, k)
        };
        // Identity rows: output (r, c) is weight (c, r).
        let x: Vec<f32> = (0..k * k)
            .map(|i| if i / k == i % k { 1.0 } else { 0.0 })
            .collect();
        let xb = ctx.storage_with("x", &x).unwrap();
        let shape = split_shape(&spec, 1);
        let w = SplitWeights::new_within(ctx, "w", shape, limit_for_parts(&spec, 1, 3)).unwrap();
        w.write_slot(ctx, 0, |cols| {
            format.select_rows(&packed, n, k, &[(cols.first, cols.end())])
        })
        .unwrap();
        let zero = ctx.storage_with("zero", &[0u32]).unwrap();
        let out = ctx.storage("out", (k * n * 4) as u64).unwrap();
        for &tiling in &tilings {
            let spec = MatmulSpec { tiling, ..spec };
            let buffers = MatmulBuffers {
                x: &xb,
                w: &w,
                bias: &zero,
                slots: &zero,
                tiles: &zero,
                rows: &zero,
                out: &out,
            };
            let mm = Matmul::new(ctx, spec, k, n, 1, buffers).unwrap();
            common::run_pass(ctx, |pass| mm.encode(ctx, pass, k));
            let got: Vec<f32> = ctx.read_back(&out, k * n).unwrap();
            let wrong = (0..k * n)
                .filter(|&i| got[i] != want[(i % n) * k + i / n])
                .count();
            if wrong > 0 {
                bad.push(format!(
                    "{ty} {tiling:?}: {wrong} of {} weights differ",
                    n * k
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
