//! [`GgufVocab`] from a file's `tokenizer.*` keys.

use super::file::GgufFile;
use super::vocab::GgufVocab;
use crate::error::Result;

impl GgufVocab {
    /// The vocabulary of `g`: `tokenizer.ggml.model` and `tokenizer.ggml.tokens` are required,
    /// the other keys optional.
    pub fn read(g: &GgufFile) -> Result<Self> {
        let strings = |key: &str| -> Result<Vec<String>> {
            match g.get(key) {
                None => Ok(Vec::new()),
                Some(_) => Ok(g.strings(key)?.into_iter().map(String::from).collect()),
            }
        };
        let id = |key: &str| -> Result<Option<u32>> {
            g.u64_opt(key)?
                .map(|v| {
                    u32::try_from(v)
                        .map_err(|_| g.key_error(key, format!("is {v}, not a token id")))
                })
                .transpose()
        };
        let token_types = match g.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(_) => g
                .i64s("tokenizer.ggml.token_type")?
                .into_iter()
                .map(|t| t.clamp(i32::MIN as i64, i32::MAX as i64) as i32)
                .collect(),
        };
        let scores = match g.get("tokenizer.ggml.scores") {
            None => Vec::new(),
            Some(_) => g.f32s("tokenizer.ggml.scores")?,
        };
        Ok(Self {
            model: g.string("tokenizer.ggml.model")?.to_string(),
            pre: g.string_opt("tokenizer.ggml.pre")?.map(String::from),
            tokens: g
                .strings("tokenizer.ggml.tokens")?
                .into_iter()
                .map(String::from)
                .collect(),
            token_types,
            scores,
            merges: strings("tokenizer.ggml.merges")?,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            add_bos: g.bool_opt("tokenizer.ggml.add_bos_token")?,
            add_eos: g.bool_opt("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: g.bool_opt("tokenizer.ggml.add_space_prefix")?,
            chat_template: g.string_opt("tokenizer.chat_template")?.map(String::from),
        })
    }
}
