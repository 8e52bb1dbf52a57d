//! `moe synth` on bad input: an unknown model, zero layers, MXFP4 for a model released in
//! bf16 and an output path that is a file each end in an error naming what is wrong, with
//! nothing written. (Writing is covered on tiny widths in the model tests: real sizes take
//! gigabytes.)

use std::process::{Command, Output};

use crate::common::edit::temp_dir;

fn synth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moe"))
        .arg("synth")
        .args(args)
        .output()
        .unwrap()
}

fn failure(args: &[&str]) -> String {
    let out = synth(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn synth_rejects_bad_input_with_a_clear_error() {
    let d = temp_dir("cli-synth");
    let out = d.join("out");
    let o = out.to_str().unwrap();
    let e = failure(&["--like", "mixtral-8x22b", "--out", o]);
    assert!(e.contains("--like") && e.contains("mixtral-8x7b"), "{e}");
    let e = failure(&["--like", "olmoe-1b-7b", "--layers", "0", "--out", o]);
    assert!(e.contains("--layers"), "{e}");
    let e = failure(&["--like", "mixtral-8x7b", "--dtype", "mxfp4", "--out", o]);
    assert!(e.contains("mxfp4") && e.contains("gpt-oss-20b"), "{e}");
    assert!(!out.exists());
    let file = d.join("file");
    std::fs::write(&file, "").unwrap();
    let e = failure(&["--like", "olmoe-1b-7b", "--out", file.to_str().unwrap()]);
    assert!(e.contains(file.to_str().unwrap()), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}
