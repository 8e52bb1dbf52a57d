//! Threads: eight threads, each with its own `Model` on one shared `Context`, and eight threads
//! taking turns on one `Model` behind a `Mutex`, give results bit-identical to one thread; for
//! two architectures, one of them with an expert cache.

use std::sync::Mutex;

use moe_gpu::moe::{CpuOptions, ExpertBudget, ResidencyOptions};
use moe_gpu::{Context, GenerateOptions, Logits, Model, ModelOptions};

use crate::common;
use crate::common::fixtures::Fixture;

const THREADS: usize = 8;

/// The prompt's last logits (as bits) and six greedy tokens after it.
type Run = (Vec<u32>, Vec<u32>);

struct Case {
    fx: Fixture,
    options: ModelOptions,
}

fn cases() -> Vec<Case> {
    let cached = Fixture::open("hf-tiny", "mixtral");
    let k = cached.ids("layers.1.moe.topk_ids").len() / cached.ids("input_ids").len();
    vec![
        Case {
            fx: cached,
            options: ModelOptions {
                residency: ResidencyOptions {
                    budget: ExpertBudget::SlotsPerLayer(k),
                    cpu: CpuOptions::never(),
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        Case {
            fx: Fixture::open("hf-tiny-alt", "deepseek_v3"),
            options: ModelOptions::default(),
        },
    ]
}

fn run(ctx: &Context, model: &mut Model, fx: &Fixture) -> Run {
    let prompt = fx.ids("input_ids");
    model.reset();
    let logits = model.forward(ctx, &prompt, Logits::Last).unwrap();
    let options = GenerateOptions {
        max_new_tokens: 6,
        ignore_eos: true,
        ..GenerateOptions::for_model(model)
    };
    let tokens = model
        .generate(ctx, &prompt, options)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (logits.iter().map(|x| x.to_bits()).collect(), tokens)
}

fn load(ctx: &Context, case: &Case) -> Model {
    Model::load_with(ctx, &case.fx.model_dir, &case.options).unwrap()
}

/// Each case run by one thread, alone.
fn single_threaded(ctx: &Context, cases: &[Case]) -> Vec<Run> {
    cases
        .iter()
        .map(|c| run(ctx, &mut load(ctx, c), &c.fx))
        .collect()
}

#[test]
fn eight_threads_with_a_model_each_on_one_context_match_one_thread() {
    let ctx = common::ctx();
    let cases = cases();
    let want = single_threaded(ctx, &cases);
    let got: Vec<(usize, Run)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let which = t % cases.len();
                let case = &cases[which];
                s.spawn(move || {
                    let mut model = load(ctx, case);
                    // Two runs each, so that loads and steps of the threads overlap.
                    let first = run(ctx, &mut model, &case.fx);
                    assert_eq!(first, run(ctx, &mut model, &case.fx), "thread {t}");
                    (which, first)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, (case, run)) in got.iter().enumerate() {
        assert_eq!(run, &want[*case], "thread {t} differs from one thread");
    }
}

#[test]
fn eight_threads_taking_turns_on_one_model_match_one_thread() {
    let ctx = common::ctx();
    let cases = cases();
    let want = single_threaded(ctx, &cases);
    for (case, want) in cases.iter().zip(&want) {
        // A Model is Send, not Sync: threads share it through a Mutex.
        let shared = Mutex::new(load(ctx, case));
        let got: Vec<Run> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| s.spawn(|| run(ctx, &mut shared.lock().unwrap(), &case.fx)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (t, run) in got.iter().enumerate() {
            assert_eq!(run, want, "thread {t} differs from one thread");
        }
    }
}
