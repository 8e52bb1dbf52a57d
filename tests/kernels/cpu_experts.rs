//! The CPU expert kernels (`moe_gpu::cpu`) against `reference::linear::glu_mlp` on the weights
//! each format holds: every format and two mixed ones, odd shapes, 1 to 17 tokens, with and
//! without biases; the same bits for any pool size and run; bad input as errors. No GPU.

use moe_gpu::cpu::CpuExperts;
use moe_gpu::reference::linear::glu_mlp;
use moe_gpu::spec::layer_spec::Glu;
use moe_gpu::spec::weight_format::{ExpertFormat, WeightFormat};
use moe_gpu::spec::weights::{ExpertWeights, PackedExpert};
use moe_gpu::synthetic::{Rng, random_mlp};

const SWIGLU: Glu = Glu::ClampedSwiglu {
    limit: 7.0,
    alpha: 1.702,
};

/// Random weights, packed in `format`, and the f32 weights that packing holds.
fn expert(
    format: ExpertFormat,
    hidden: usize,
    inter: usize,
    bias: bool,
    seed: u64,
) -> (PackedExpert, ExpertWeights) {
    let w = random_mlp(&mut Rng::new(seed), hidden, inter, bias);
    let packed = w.pack(format, hidden, inter);
    let held = ExpertWeights {
        gate: format.gate_up.dequantize(&w.gate, inter, hidden),
        up: format.gate_up.dequantize(&w.up, inter, hidden),
        down: format.down.dequantize(&w.down, hidden, inter),
        ..w
    };
    (packed, held)
}

fn forward(
    cpu: &CpuExperts,
    w: &PackedExpert,
    hidden: usize,
    inter: usize,
    glu: Glu,
    x: &[f32],
) -> Vec<f32> {
    let n = x.len() / hidden;
    let mut out = vec![f32::NAN; n * hidden];
    cpu.forward(w, hidden, inter, glu, x, n, &mut out).unwrap();
    out
}

fn formats() -> Vec<ExpertFormat> {
    let mut all: Vec<_> = WeightFormat::ALL.map(ExpertFormat::uniform).into();
    all.push(ExpertFormat {
        gate_up: WeightFormat::Q4K,
        down: WeightFormat::Q6K,
    });
    all.push(ExpertFormat {
        gate_up: WeightFormat::Int4,
        down: WeightFormat::Int8,
    });
    all
}

#[test]
fn cpu_experts_match_the_reference_in_every_format() {
    let cpu = CpuExperts::new(2).unwrap();
    for format in formats() {
        // Rows of 40, 20, 24, 12 and 96 values: partial groups and partial K-quant blocks.
        for (s, (hidden, inter)) in [(40, 24), (20, 12), (256, 96)].into_iter().enumerate() {
            for (t, tokens) in [1, 3, 17].into_iter().enumerate() {
                let case = 3 * s + t;
                let (bias, glu) = (case % 2 == 0, [Glu::Silu, SWIGLU][case / 2 % 2]);
                let (packed, held) = expert(format, hidden, inter, bias, case as u64);
                let x = Rng::new(100 + case as u64).normals(tokens * hidden, 1.0);
                let got = forward(&cpu, &packed, hidden, inter, glu, &x);
                let want = glu_mlp(&x, tokens, hidden, inter, &held, glu);
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let err = got
                    .iter()
                    .zip(&want)
                    .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
                assert!(
                    err <= 1e-4 * (1.0 + scale),
                    "{format} hidden {hidden} inter {inter} tokens {tokens} bias {bias} \
                     {glu:?}: max error {err}, max |ref| {scale}"
                );
            }
        }
    }
}

#[test]
fn cpu_experts_give_the_same_bits_for_any_pool_and_run() {
    let pools: Vec<CpuExperts> = [1, 2, 3].map(|t| CpuExperts::new(t).unwrap()).into();
    assert_eq!(
        pools.iter().map(CpuExperts::threads).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(CpuExperts::new(0).unwrap().threads() >= 1);
    let (hidden, inter) = (256, 96);
    for format in [WeightFormat::F16, WeightFormat::Int4, WeightFormat::Q4K] {
        let (packed, _) = expert(ExpertFormat::uniform(format), hidden, inter, true, 7);
        for tokens in [1, 17] {
            let x = Rng::new(8).normals(tokens * hidden, 1.0);
            let bits = |cpu| -> Vec<u32> {
                let out = forward(cpu, &packed, hidden, inter, SWIGLU, &x);
                out.iter().map(|v| v.to_bits()).collect()
            };
            let first = bits(&pools[0]);
            for cpu in &pools[1..] {
                assert_eq!(
                    bits(cpu),
                    first,
                    "{format:?} {tokens} tokens, {} threads",
                    cpu.threads()
                );
            }
            for run in 0..10 {
                assert_eq!(
                    bits(&pools[2]),
                    first,
                    "{format:?} {tokens} tokens, run {run}"
                );
            }
        }
    }
}

#[test]
fn bad_cpu_expert_input_is_an_error() {
    let cpu = CpuExperts::new(1).unwrap();
    let (hidden, inter, n) = (40, 24, 3);
    let (packed, _) = expert(
        ExpertFormat::uniform(WeightFormat::Int4),
        hidden,
        inter,
        true,
        1,
    );
    let x = vec![0.5; n * hidden];
    let mut out = vec![0.0; n * hidden];
    let err = |w: &PackedExpert, glu, x: &[f32], out: &mut [f32]| {
        cpu.forward(w, hidden, inter, glu, x, n, out)
            .expect_err("bad input was accepted")
            .to_string()
    };
    let e = err(&packed, Glu::Silu, &x[1..], &mut out);
    assert!(e.contains("x has"), "{e}");
    let e = err(&packed, Glu::Silu, &x, &mut out[1..]);
    assert!(e.contains("out has"), "{e}");
    let e = err(&packed, Glu::None, &x, &mut out);
    assert!(e.contains("Glu::None"), "{e}");
    let mut short = packed.clone();
    short.gate_up.pop();
    let e = err(&short, Glu::Silu, &x, &mut out);
    assert!(e.contains("gate_up"), "{e}");
    let mut wrong = packed.clone();
    wrong.format.down = WeightFormat::Q4K;
    let e = err(&wrong, Glu::Silu, &x, &mut out);
    assert!(e.contains("down") && e.contains("q4_k"), "{e}");
    let mut bias = packed.clone();
    bias.bias.as_mut().unwrap().1.push(0.0);
    let e = err(&bias, Glu::Silu, &x, &mut out);
    assert!(e.contains("down_bias"), "{e}");
    let e = cpu
        .forward(&packed, 0, inter, Glu::Silu, &x, n, &mut out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn cpu_experts_give_a_token_the_same_bits_alone_and_in_a_batch() {
    let cpu = CpuExperts::new(2).unwrap();
    let mixed = ExpertFormat {
        gate_up: WeightFormat::Q4K,
        down: WeightFormat::Q6K,
    };
    let uniform = [
        WeightFormat::F16,
        WeightFormat::Q8_0,
        WeightFormat::Int4,
        WeightFormat::Mxfp4,
        WeightFormat::Q5K,
    ];
    let tokens = 17;
    // Rows of 256 and 96 values decode block by block; rows of 40 and 24 whole.
    for (hidden, inter) in [(256, 96), (40, 24)] {
        for format in uniform
            .map(ExpertFormat::uniform)
            .into_iter()
            .chain([mixed])
        {
            let (packed, _) = expert(format, hidden, inter, true, 3);
            let x = Rng::new(4).normals(tokens * hidden, 1.0);
            let batch = forward(&cpu, &packed, hidden, inter, SWIGLU, &x);
            for (t, (x, want)) in x.chunks(hidden).zip(batch.chunks(hidden)).enumerate() {
                let alone = forward(&cpu, &packed, hidden, inter, SWIGLU, x);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&alone),
                    bits(want),
                    "{format} hidden {hidden} token {t}"
                );
            }
        }
    }
}
