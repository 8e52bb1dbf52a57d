//! What the CLI says about values a user gets wrong, and statistics that add up: negative
//! numbers are refused with the reason (not as unknown arguments), an error names the flag the
//! user gave, and runs without a prefill or with every expert resident print no empty figures.

use crate::common::fixtures::dir;
use crate::run::{moe, stderr};

#[test]
fn negative_and_out_of_range_values_say_why() {
    let model = dir("hf-tiny", "mixtral").join("model");
    let m = model.to_str().unwrap();
    let generate = |flag: &str, value: &str| {
        moe(&["generate", "--model", m, "--prompt-ids", "1", flag, value])
    };
    for (o, want) in [
        (
            generate("--temperature", "-1"),
            "temperature -1 must be positive",
        ),
        (generate("--top-p", "-0.5"), "top-p -0.5 must be in (0, 1]"),
        (generate("--expert-top-k", "0"), "--expert-top-k"),
        (
            generate("--max-batch", "0"),
            "--max-batch must be at least 1",
        ),
        (
            moe(&[
                "block", "--model", m, "--layer", "-1", "--input", "x", "--output", "y",
            ]),
            "layers count from 0",
        ),
        (moe(&["demo", "--hidden", "-5"]), "'-5' for '--hidden"),
        (
            moe(&["demo", "--sequences", "0"]),
            "--sequences must be at least 1",
        ),
        (
            moe(&["serve", "--model", m, "--max-batch", "0", "--port", "0"]),
            "--max-batch must be at least 1",
        ),
    ] {
        let e = stderr(&o);
        assert!(!o.status.success(), "{want}: succeeded");
        assert!(e.contains(want), "wanted `{want}` in: {e}");
        assert!(!e.contains("unexpected argument"), "{e}");
    }
}

#[test]
fn statistics_print_no_empty_figures() {
    let model = dir("hf-tiny", "mixtral").join("model");
    let m = model.to_str().unwrap();
    let o = moe(&[
        "generate",
        "--model",
        m,
        "--prompt-ids",
        "1,2",
        "--max-new-tokens",
        "0",
    ]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("prefill 0.0 tokens/s"), "{e}");
    assert!(e.contains("all resident, ") && !e.contains("0 hits"), "{e}");
    let o = moe(&[
        "generate",
        "--model",
        m,
        "--prompt-ids",
        "1,2,3",
        "--max-new-tokens",
        "4",
        "--expert-slots",
        "2",
    ]);
    let e = stderr(&o);
    assert!(
        e.contains("hit rate") && e.contains("evicted expert uploads again"),
        "{e}"
    );
}
