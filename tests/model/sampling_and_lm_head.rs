//! The host sampler (greedy, temperature, top-k, top-p, seeds, invalid logits) and the LM head
//! split over vocabulary chunks under a storage binding limit, against `reference::linear`.

use moe_gpu::Sampling;
use moe_gpu::gpu::Staging;
use moe_gpu::kernels::matmul::WeightFormat;
use moe_gpu::model::projection::LmHead;
use moe_gpu::model::sampling::{Sampler, filter};
use moe_gpu::reference::linear;
use moe_gpu::synthetic::Rng;

use crate::common;

fn err_of<T>(r: moe_gpu::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn sampling_filters_keep_the_right_tokens() {
    let logits = [1.0, 3.0, 2.0, 3.0, -1.0];
    // top-k keeps the k largest, ties in id order.
    let kept: Vec<u32> = filter(&logits, 1.0, Some(2), None)
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(kept, [1, 3]);
    // top-p: p(3) = p(3) ≈ 0.38, p(2) ≈ 0.14: 0.5 needs the first two.
    let kept = filter(&logits, 1.0, None, Some(0.5));
    assert_eq!(kept.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 3]);
    assert!((kept.iter().map(|p| p.1).sum::<f64>() - 1.0).abs() < 1e-12);
    // top-p always keeps one token; a tiny temperature concentrates the mass.
    assert_eq!(filter(&logits, 1.0, None, Some(1e-6)).len(), 1);
    let sharp = filter(&logits, 0.01, None, None);
    assert!(sharp[0].1 + sharp[1].1 > 0.999);
    // top-k = 1 is greedy whatever the seed.
    for seed in 0..5 {
        let mut s = Sampler::new(Sampling::Random {
            temperature: 1.0,
            top_k: Some(1),
            top_p: None,
            seed,
        })
        .unwrap();
        assert_eq!(s.sample(&logits).unwrap(), 1);
    }
    let mut greedy = Sampler::new(Sampling::Greedy).unwrap();
    assert!(
        err_of(greedy.sample(&[0.0, f32::NAN]).map(|_| ())).contains("NaN"),
        "NaN logits are an error"
    );
    for bad in [
        Sampling::Random {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        },
        Sampling::Random {
            temperature: 1.0,
            top_k: Some(0),
            top_p: None,
            seed: 0,
        },
        Sampling::Random {
            temperature: 1.0,
            top_k: None,
            top_p: Some(1.5),
            seed: 0,
        },
    ] {
        assert!(Sampler::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn lm_head_split_over_vocab_chunks_matches_reference() {
    let ctx = common::ctx();
    let mut rng = Rng::new(9);
    let (vocab, hidden, rows) = (437, 40, 3);
    let w = rng.normals(vocab * hidden, 0.2);
    let x = rng.normals(rows * hidden, 1.0);
    let xb = ctx.storage_with("x", &x).unwrap();
    // 100 rows of 40 f32 per chunk: five chunks, the last one short.
    let limit = 100 * 40 * 4;
    let head = LmHead::with_binding_limit(
        ctx,
        "head",
        &w,
        vocab,
        hidden,
        WeightFormat::F32,
        &xb,
        rows,
        limit,
    )
    .unwrap();
    assert_eq!(head.chunks.len(), 5);
    let staging = Staging::new(ctx, "logits", (rows * vocab * 4) as u64).unwrap();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        head.encode(ctx, &mut pass, rows);
    }
    head.copy_out(&mut encoder, &staging, rows);
    ctx.submit([encoder.finish()]).unwrap();
    let got: Vec<f32> = staging.read(ctx, rows * vocab).unwrap();
    let want = linear(&x, rows, hidden, &w, vocab, None);
    common::assert_close("chunked LM head", &got, &want, 1e-5);
    let err = err_of(LmHead::with_binding_limit(
        ctx,
        "head",
        &w,
        vocab,
        hidden,
        WeightFormat::F32,
        &xb,
        rows,
        100,
    ));
    assert!(err.contains("max_storage_buffer_binding_size"), "{err}");
}
