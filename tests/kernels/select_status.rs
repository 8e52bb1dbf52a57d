//! The select kernel's status word: a NaN or infinite logit (the shared-gate column included)
//! writes the tag, finite extremes never do, and a tag already there is kept.

use moe_gpu::moe::{DynamicActivation, RoutingSpec};

use crate::kernel_select::run_select;

/// Runs the selection of `tokens` tokens over `logits` with the status word starting at
/// `start` and tag 9; returns the word.
fn status_after(spec: &RoutingSpec, logits: &[f32], tokens: usize, start: u32) -> u32 {
    let act = DynamicActivation::default();
    let routed = run_select(spec, logits, tokens, None, &act, None, Some((start, 9)));
    routed.status.expect("a status word")
}

#[test]
fn only_nan_and_infinite_logits_set_the_status_word() {
    let spec = RoutingSpec::softmax(6, 2, true);
    let tokens = 70;
    for (value, flagged) in [
        (f32::NAN, true),
        (f32::INFINITY, true),
        (f32::NEG_INFINITY, true),
        (f32::MAX, false),
        (f32::MIN, false),
        (f32::MIN_POSITIVE / 4.0, false),
        (-0.0, false),
    ] {
        for at in [0, 3 * 6 + 5, (tokens - 1) * 6 + 2] {
            let mut logits = vec![0.25f32; tokens * 6];
            logits[at] = value;
            let want = if flagged { 9 } else { 0 };
            let got = status_after(&spec, &logits, tokens, 0);
            assert_eq!(got, want, "{value} at {at}");
        }
    }
}

#[test]
fn an_earlier_tag_is_kept_and_the_shared_gate_column_counts() {
    let spec = RoutingSpec::softmax(4, 2, true);
    assert_eq!(status_after(&spec, &[f32::NAN; 8], 2, 5), 5);
    let gated = RoutingSpec {
        shared_gate: true,
        ..spec
    };
    // Two tokens of 4 expert logits and a gate logit each; token 1's gate is infinite.
    let mut logits = vec![0.5f32; 10];
    logits[9] = f32::INFINITY;
    assert_eq!(status_after(&gated, &logits, 2, 0), 9);
    logits[9] = 0.5;
    assert_eq!(status_after(&gated, &logits, 2, 0), 0);
}
