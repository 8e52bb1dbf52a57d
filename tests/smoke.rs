mod common;
use moe_gpu::kernels::matmul::{Glu, WeightFormat};
use moe_gpu::moe::*;
use moe_gpu::synthetic::{Rng, random_moe_weights};

#[test]
fn smoke() {
    let ctx = common::ctx();
    println!("{}", ctx.describe());
    let spec = MoeLayerSpec { hidden: 37, inter: 29, routing: RoutingSpec::softmax(8, 2, true), glu: Glu::Silu, expert_bias: false, shared_inter: None, format: WeightFormat::F32 };
    let w = random_moe_weights(&spec, 1);
    let layer = MoeLayer::new(ctx, spec.clone(), &w, 64).unwrap();
    for t in [1usize, 7, 33] {
        let x = Rng::new(5).normals(t * 37, 1.0);
        let out = layer.forward_with(ctx, &x, &ForwardOptions { capture_routing: true, ..Default::default() }).unwrap();
        let r = moe_gpu::reference::moe_block(&x, &spec, &w, &Default::default()).unwrap();
        common::assert_close("logits", out.router_logits.as_ref().unwrap(), &r.router_logits, 1e-5);
        common::assert_same_routing("route", 2, out.topk_ids.as_ref().unwrap(), out.topk_weights.as_ref().unwrap(), &r.topk_ids, &r.topk_weights, 1e-5);
        common::assert_close("out", &out.output, &r.output, 1e-4);
    }
}
