//! Inputs a user can give that must end in a clean exit or a clear error, never a panic or an
//! abort: a closed stdout, absurd `moe demo` sizes, statistics of another model for
//! `moe prune`, and `moe block` input large enough to overflow the router.

use std::process::{Command, Stdio};

use crate::common::fixtures::dir;

/// Runs `moe args` with its stdout a pipe whose read end is closed at once, as `| head -0`
/// would, and returns the exit status and stderr.
fn with_stdout_closed(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_each_printing_command_quietly() {
    let olmoe = dir("hf-tiny", "olmoe").join("model");
    let olmoe = olmoe.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["inspect", "--model", olmoe, "--json"],
        vec!["inspect", "--model", olmoe],
        vec!["demo", "--layers", "1", "--decode-steps", "1"],
        vec![
            "generate",
            "--model",
            olmoe,
            "--prompt-ids",
            "1,2,3",
            "--max-new-tokens",
            "4",
        ],
    ];
    for args in cases {
        let (status, err) = with_stdout_closed(&args);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {status}: {err}");
    }
}
