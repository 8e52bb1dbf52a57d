//! `tokenizer.ggml.model = gpt2`: byte-level BPE. The text is split by the regexes llama.cpp
//! runs for `tokenizer.ggml.pre` (each regex splits the pieces the previous one left, keeping
//! both the matches and the text between them), mapped to GPT-2's byte alphabet, and merged by
//! the rank of `tokenizer.ggml.merges`.

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};

/// GPT-2's pattern (contractions, letters, digits, other symbols, trailing spaces).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's pattern with its case-insensitive contractions spelled out, as llama.cpp has it.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama 3's with one digit per piece.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o's (o200k): cased words with lookaheads in place of `\p{Lu}`/`\p{Ll}`, as llama.cpp
/// has it.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek-V3's third pattern (after digits in threes and CJK runs).
const DEEPSEEK3: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
/// DeepSeek-LLM's letters: Latin, Greek, Cyrillic and other cased scripts.
const DEEPSEEK_LLM_LETTERS: &str = "A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}";

/// One family of `tokenizer.ggml.pre` names that llama.cpp tokenizes alike.
struct PreTokenizer {
    names: &'static [&'static str],
    regexes: fn() -> Vec<String>,
    /// A word that is itself a token is not merged (llama.cpp's `ignore_merges`).
    ignore_merges: bool,
    /// llama.cpp adds BOS when the file has no `add_bos_token`.
    adds_bos: bool,
}

const PRE_TOKENIZERS: &[PreTokenizer] = &[
    PreTokenizer {
        names: &["default"],
        regexes: || {
            let mut r = vec![r"[\p{P}\$\+<=>\^~\|]+".to_string(), GPT2.into()];
            r.extend([r"\p{N}+".into(), "[0-9][0-9][0-9]".into()]);
            r
        },
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizer {
        names: &[
            "gpt-2",
            "phi-2",
            "roberta-bpe",
            "jina-es",
            "jina-de",
            "jina-v1-en",
            "jina-v2-es",
            "jina-v2-de",
            "jina-v2-code",
            "gigachat",
            "a.x-4.0",
            "mellum",
            "modern-bert",
            "exaone4",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
            "viking",
        ],
        regexes: || vec![GPT2.into()],
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizer {
        names: &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ],
        regexes: || vec![LLAMA3.into()],
        ignore_merges: true,
        adds_bos: true,
    },
    PreTokenizer {
        names: &["dbrx", "smaug-bpe", "chatglm-bpe"],
        regexes: || vec![LLAMA3.into()],
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizer {
        names: &[
            "qwen2",
            "deepseek-r1-qwen",
            "kormo",
            "f2llmv2",
            "megrez",
            "stablelm2",
        ],
        regexes: || vec![QWEN2.into()],
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizer {
        names: &["gpt-4o", "llama4", "kanana2", "talkie"],
        regexes: || vec![GPT4O.into()],
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizer {
        names: &["deepseek-v3"],
        regexes: || {
            let cjk = "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+";
            vec![r"\p{N}{1,3}".into(), cjk.into(), DEEPSEEK3.into()]
        },
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizer {
        names: &["deepseek-llm"],
        regexes: || {
            let punct =
                "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+";
            vec![
                "[\r\n]".into(),
                format!("\\s?[{DEEPSEEK_LLM_LETTERS}]+"),
                punct.into(),
                r"\s+$".into(),
                "[\u{4e00}-\u{9fa5}\u{0800}-\u{4e00}\u{ac00}-\u{d7ff}]+".into(),
                r"\p{N}+".into(),
            ]
        },
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizer {
        names: &["deepseek-coder"],
        regexes: || {
            let cjk = "[\u{4e00}-\u{9fa5}\u{0800}-\u{4e00}\u{ac00}-\u{d7ff}]+";
            let mut r = vec![
                "[\r\n]".to_string(),
                r"\s?\p{L}+".into(),
                r"\s?\p{P}+".into(),
            ];
            r.extend([cjk.into(), r"\p{N}".into()]);
            r
        },
        ignore_merges: false,
        adds_bos: false,
    },
    PreTokenizer {
        names: &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        regexes: || vec![r"\p{N}".into(), GPT2.into()],
        ignore_merges: false,
        adds_bos: false,
    },
];

fn pre_tokenizer(name: &str) -> Result<&'static PreTokenizer> {
    PRE_TOKENIZERS
        .iter()
        .find(|p| p.names.contains(&name))
        .ok_or_else(|| {
            let known: Vec<&str> = PRE_TOKENIZERS
                .iter()
                .flat_map(|p| p.names)
                .copied()
                .collect();
            Error::input(format!(
                "GGUF tokenizer.ggml.pre {name:?} is not supported; supported: {}",
                known.join(", ")
            ))
        })
}

/// Whether llama.cpp adds BOS for pre-tokenizer `name` when the file does not say.
pub(crate) fn adds_bos_by_default(name: &str) -> bool {
    pre_tokenizer(name).is_ok_and(|p| p.adds_bos)
}

/// The byte-level BPE tokenizer of `tokens` with `merges` and pre-tokenizer `pre` (special
/// tokens and BOS/EOS are added by the caller).
pub(crate) fn build(tokens: &[String], merges: &[String], pre_name: &str) -> Result<Tokenizer> {
    let pre = pre_tokenizer(pre_name)?;
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, merge)| {
            split_merge(merge).ok_or_else(|| {
            Error::input(format!(
                "GGUF tokenizer.ggml.merges[{i}] = {merge:?} is not two tokens separated by a space"
            ))
        })
        })
        .collect::<Result<Vec<_>>>()?;
    let ids: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), id as u32))
        .collect();
    let model = BPE::builder()
        .vocab_and_merges(ids, merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| Error::input(format!("GGUF tokenizer.ggml.merges: {e}")))?;
    let mut splits = Vec::new();
    for regex in (pre.regexes)() {
        let split = Split::new(
            SplitPattern::Regex(regex),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::input(format!("pre-tokenizer {pre_name:?}: {e}")))?;
        splits.push(PreTokenizerWrapper::Split(split));
    }
    splits.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, false, false,
    )));
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_pre_tokenizer(Some(Sequence::new(splits)))
        .with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// `"left right"` split at its first space after the first byte, as llama.cpp splits merges
/// (a left part may itself be a space).
fn split_merge(merge: &str) -> Option<(String, String)> {
    let first = merge.chars().next()?.len_utf8();
    let at = first + merge[first..].find(' ')?;
    Some((merge[..at].to_string(), merge[at + 1..].to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_split_at_the_first_space_after_the_first_character() {
        let split = split_merge;
        assert_eq!(split("a b"), Some(("a".into(), "b".into())));
        assert_eq!(split("  x"), Some((" ".into(), "x".into())));
        assert_eq!(split("é b c"), Some(("é".into(), "b c".into())));
        assert_eq!(split("ab"), None);
        assert_eq!(split(""), None);
    }

    #[test]
    fn every_pre_tokenizer_compiles() {
        for name in PRE_TOKENIZERS.iter().flat_map(|p| p.names) {
            if let Err(e) = build(&["a".into()], &[], name) {
                panic!("{name}: {e}");
            }
        }
    }
}
