//! `tokenizer.ggml.model = llama`: SentencePiece BPE as llama.cpp runs it. Spaces become `▁`
//! (with one prepended to each run of text when `add_space_prefix`), the text is split into
//! characters and adjacent pieces are merged while their concatenation is a token, the
//! highest-scoring one first; a character that is no token falls back to its `<0xXX>` bytes.
//!
//! The `tokenizers` BPE model merges by rank, so the merges are derived from the scores: every
//! way to split a token into two tokens is a merge, ranked by the token's score.

use std::collections::{HashMap, HashSet};

use tokenizers::Tokenizer;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace, Sequence};

use crate::error::{Error, Result};

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

/// The SentencePiece tokenizer of `tokens` with `scores` (as long, none NaN), unknown token
/// `unk`, `<0xXX>` byte fallback where `byte_fallback`, and a `▁` before each run of text where
/// `space_prefix` (special tokens and BOS/EOS are added by the caller).
pub(crate) fn build(
    tokens: &[String],
    scores: &[f32],
    unk: Option<u32>,
    byte_fallback: bool,
    space_prefix: bool,
) -> Result<Tokenizer> {
    // Later duplicates win, as in llama.cpp's text-to-id map.
    let ids: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.as_str(), id as u32))
        .collect();
    let merges = merges_by_score(tokens, scores, &ids);
    let mut builder = BPE::builder()
        .vocab_and_merges(
            ids.iter()
                .map(|(t, &id)| (t.to_string(), id))
                .collect::<Vocab>(),
            merges,
        )
        .byte_fallback(byte_fallback);
    if let Some(text) = unk.and_then(|id| tokens.get(id as usize)) {
        builder = builder.unk_token(text.clone());
    }
    let model = builder
        .build()
        .map_err(|e| Error::input(format!("GGUF SentencePiece vocab: {e}")))?;

    let escape = Replace::new(" ", SPACE).map_err(|e| Error::input(e.to_string()))?;
    let mut normalizers = vec![NormalizerWrapper::Replace(escape)];
    if space_prefix {
        normalizers.insert(0, NormalizerWrapper::Prepend(Prepend::new(SPACE.into())));
    }
    let unescape = Replace::new(SPACE, " ").map_err(|e| Error::input(e.to_string()))?;
    let mut decoders = vec![
        DecoderWrapper::Replace(unescape),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if space_prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(Sequence::new(normalizers)))
        .with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Every split of a token into two tokens, the highest-scoring token's first (ties by id).
fn merges_by_score(
    tokens: &[String],
    scores: &[f32],
    ids: &HashMap<&str, u32>,
) -> Vec<(String, String)> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut seen = HashSet::new();
    let mut merges = Vec::new();
    for id in order {
        let text = tokens[id].as_str();
        if ids.get(text) != Some(&(id as u32)) {
            continue;
        }
        for (at, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(at);
            if ids.contains_key(left) && ids.contains_key(right) && seen.insert((left, right)) {
                merges.push((left.to_string(), right.to_string()));
            }
        }
    }
    merges
}
