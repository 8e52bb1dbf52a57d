//! Calibration and evaluation tokens: a file of text or token ids, or a built-in set.

use std::path::Path;

use anyhow::{Context as _, Result};
use moe_gpu::Tokenizer;
use moe_gpu::model::collect_calibration::{BUILTIN_TEXT, builtin_ids, split};

/// Token ids of `path` (whitespace- or comma-separated integers, or text encoded with the
/// model's tokenizer), or of the built-in set when `path` is None: the built-in text with a
/// tokenizer, else `sequences` rows of deterministic pseudo-random ids. Split into sequences of
/// at most `len` tokens.
pub fn load_tokens(
    model: &Path,
    path: Option<&Path>,
    vocab: usize,
    len: usize,
    sequences: usize,
) -> Result<Vec<Vec<u32>>> {
    let has_tokenizer = Tokenizer::exists(model);
    let ids = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            match parse_ids(&text) {
                Some(ids) => ids,
                None => Tokenizer::load(model)
                    .with_context(|| {
                        format!("{} is text, which needs the model's tokenizer", p.display())
                    })?
                    .encode(&text)?,
            }
        }
        None if has_tokenizer => Tokenizer::load(model)?.encode(BUILTIN_TEXT)?,
        None => return Ok(builtin_ids(vocab, sequences, len, 17)),
    };
    if ids.is_empty() {
        anyhow::bail!("no tokens in the data");
    }
    Ok(split(&ids, len))
}

/// Integers separated by whitespace or commas, or None if anything else is there.
fn parse_ids(text: &str) -> Option<Vec<u32>> {
    let parts: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        return None;
    }
    parts.iter().map(|s| s.parse().ok()).collect()
}
