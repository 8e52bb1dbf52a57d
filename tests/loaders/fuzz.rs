//! A seeded fuzz harness for the loaders, on the stable toolchain: each target's seed inputs
//! (from the fixtures) are mutated (see `fuzz/mutate.rs`), written to a temporary directory and
//! loaded. Every input must end in `Ok` or `Err`: a panic, an input that takes over a second,
//! or a single allocation over 256 MiB fails the test, naming the target and the iteration
//! (iterations are seeded separately, so one replays alone with `MOE_GPU_FUZZ_FROM=<i>`).
//!
//! `MOE_GPU_FUZZ_ITERS` (default 5000) inputs per target; `MOE_GPU_FUZZ_SEED` changes the seed.
//! Inputs that failed are kept under `tests/fixtures/fuzz/<target>/` and replayed by `replay`.

mod alloc;
mod mutate;
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use moe_gpu::synthetic::Rng;

use crate::common::edit::temp_dir;

/// Inputs per target when `MOE_GPU_FUZZ_ITERS` is not set.
const DEFAULT_ITERS: usize = 5000;
/// The most one input may take.
const SLOW: Duration = Duration::from_secs(1);
/// The largest single allocation one input may ask for.
const BIG_ALLOC: usize = 256 << 20;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A seeded mutation of an input, given every seed (for splicing).
pub type Mutator = fn(&mut Rng, &[u8], &[Vec<u8>]) -> Vec<u8>;

/// What a target does with one input file, written at `dir/<file>`.
pub struct Target {
    pub name: &'static str,
    /// File name the input is written to.
    pub file: &'static str,
    pub seeds: Vec<Vec<u8>>,
    pub mutate: Mutator,
    /// Prepares the directory once (e.g. a valid shard beside the index).
    pub setup: fn(&Path),
    /// Loads the input; errors are fine, panics are not.
    pub run: fn(&Path),
}

/// Runs one input: `Some(message)` if it panicked, was slow or allocated too much.
pub fn check_one(t: &Target, dir: &Path, input: &[u8]) -> Option<String> {
    std::fs::write(dir.join(t.file), input).unwrap();
    alloc::start();
    let start = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| (t.run)(dir)));
    let took = start.elapsed();
    let biggest = alloc::stop();
    if let Err(p) = r {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return Some(format!("panicked: {msg}"));
    }
    if took > SLOW {
        return Some(format!("took {took:?}"));
    }
    if biggest > BIG_ALLOC {
        return Some(format!("allocated {biggest} bytes at once"));
    }
    None
}

/// Fuzzes one target; panics listing every failing input (also saved under the temp dir).
pub fn fuzz(t: Target) {
    let iters = env_num("MOE_GPU_FUZZ_ITERS", DEFAULT_ITERS as u64);
    let from = env_num("MOE_GPU_FUZZ_FROM", 0);
    let seed = env_num("MOE_GPU_FUZZ_SEED", 0x5eed);
    let dir = temp_dir(&format!("fuzz-{}", t.name));
    (t.setup)(&dir);
    let tag = t
        .name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) ^ b as u64);
    let mut failures = Vec::new();
    let started = Instant::now();
    // The seeds themselves first, unmutated.
    for (i, s) in t.seeds.iter().enumerate() {
        if let Some(m) = check_one(&t, &dir, s) {
            failures.push(format!("seed input {i}: {m}"));
        }
    }
    for i in from..from + iters {
        let mut rng = Rng::new(seed ^ tag ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let base = &t.seeds[rng.below(t.seeds.len())];
        let input = (t.mutate)(&mut rng, base, &t.seeds);
        if let Some(m) = check_one(&t, &dir, &input) {
            let keep = dir.with_extension(format!("{i}.bin"));
            std::fs::write(&keep, &input).unwrap();
            failures.push(format!(
                "iteration {i}: {m} (input kept at {})",
                keep.display()
            ));
        }
    }
    eprintln!(
        "fuzz {}: {} inputs in {:.2?}, {} failures",
        t.name,
        iters as usize + t.seeds.len(),
        started.elapsed(),
        failures.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "fuzz target `{}` (MOE_GPU_FUZZ_SEED={seed:#x}):\n{}",
        t.name,
        failures.join("\n")
    );
}

#[test]
fn fuzz_safetensors() {
    fuzz(targets::safetensors());
}

#[test]
fn fuzz_config() {
    fuzz(targets::config());
}

#[test]
fn fuzz_sharded_index() {
    fuzz(targets::sharded_index());
}

#[test]
fn fuzz_tokenizer() {
    fuzz(targets::tokenizer());
}

#[test]
fn fuzz_chat_template() {
    fuzz(targets::chat_template());
}

#[test]
fn fuzz_chat_tokenizer_config() {
    fuzz(targets::chat_tokenizer_config());
}

#[test]
fn fuzz_block_input() {
    fuzz(targets::block_input());
}

/// Every input kept under `tests/fixtures/fuzz/<target>/` loads without a panic, quickly.
#[test]
fn replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut failures = Vec::new();
    for t in targets::all() {
        let Ok(files) = std::fs::read_dir(root.join(t.name)) else {
            continue;
        };
        let dir = temp_dir(&format!("replay-{}", t.name));
        (t.setup)(&dir);
        for f in files {
            let path = f.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            if let Some(m) = check_one(&t, &dir, &input) {
                failures.push(format!("{}: {m}", path.display()));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
