//! A decoder whose hidden state overflows a router (a finite post-attention norm weight of 3e38
//! makes the router's input infinite) fails forward and generation with an error naming the
//! first such layer, at prefill and decode sizes, resident and with an expert cache.

use moe_gpu::model::ModelConfig;
use moe_gpu::moe::{ExpertBudget, ResidencyOptions};
use moe_gpu::{GenerateOptions, Logits, Model, ModelOptions};

use crate::common;
use crate::common::edit::{Raw, edited_model};
use crate::common::fixtures::Fixture;

fn err_of<T>(r: moe_gpu::Result<T>) -> String {
    r.err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn a_router_fed_an_overflowing_hidden_state_fails_naming_its_layer() {
    let ctx = common::ctx();
    // qwen3_moe: every layer is MoE, so layer 2 sees the NaN of layer 1 and the first is named;
    // deepseek_v2_dense1: layer 0 is a dense MLP.
    for (arch, layer) in [("qwen3_moe", 1), ("deepseek_v2_dense1", 2)] {
        let fx = Fixture::open("hf-tiny", arch);
        let name = format!("model.layers.{layer}.post_attention_layernorm.weight");
        let dir = edited_model(
            &fx.model_dir,
            "router-overflow",
            |t| {
                let n = t[&name].shape[0];
                t.insert(name.clone(), Raw::f32(vec![n], &vec![3e38; n]));
            },
            |_| {},
        );
        let want = format!("layer {layer}: router logits are not finite (NaN or Inf)");
        let prompt = fx.ids("input_ids");
        let k = ModelConfig::load(&dir).unwrap().moe.routing.top_k;
        for slots in [None, Some(k)] {
            let residency = ResidencyOptions {
                budget: slots.map_or(ExpertBudget::Auto, ExpertBudget::SlotsPerLayer),
                ..Default::default()
            };
            let options = ModelOptions {
                residency,
                ..Default::default()
            };
            let mut model = Model::load_with(ctx, &dir, &options).unwrap();
            let what = format!("{arch} slots {slots:?}");
            for ids in [&prompt[..], &prompt[..1]] {
                model.reset();
                let err = err_of(model.forward(ctx, ids, Logits::Last));
                assert!(err.contains(&want), "{what} {} tokens: {err:?}", ids.len());
            }
            model.reset();
            let generated = model
                .generate(ctx, &prompt, GenerateOptions::for_model(&model))
                .and_then(|g| g.collect::<moe_gpu::Result<Vec<u32>>>());
            let err = err_of(generated);
            assert!(err.contains(&want), "{what} generation: {err:?}");
        }
    }
}
