//! Running the `moe` binary from the tests.

use std::process::{Command, Output};

/// Runs `moe` with `args` to completion.
pub fn moe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(args)
        .output()
        .expect("running the moe binary")
}

/// What a run wrote to stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
