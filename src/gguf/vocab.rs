//! The tokenizer a GGUF file carries in its `tokenizer.*` metadata, built as a Hugging Face
//! [`tokenizers::Tokenizer`] that gives the ids llama.cpp's tokenizer gives.
//!
//! `tokenizer.ggml.model` picks the algorithm: `gpt2` is byte-level BPE with merges and a
//! pre-tokenizer chosen by `tokenizer.ggml.pre` ([`super::vocab_bpe`]); `llama` is
//! SentencePiece BPE merged by token score, with `<0xXX>` byte fallback and a space prefix
//! ([`super::vocab_spm`]). As llama.cpp does with `parse_special`, control, user-defined and
//! unknown tokens are recognised in the text (control and unknown ones as special tokens, which
//! decoding skips), and BOS/EOS are added when `add_bos`/`add_eos` say so, with llama.cpp's
//! defaults where the file leaves a key out.
//!
//! ```
//! use moe_gpu::gguf::GgufVocab;
//!
//! let vocab = GgufVocab {
//!     model: "gpt2".into(),
//!     pre: Some("qwen2".into()),
//!     tokens: ["h", "i", "hi", "<|end|>"].map(String::from).to_vec(),
//!     token_types: vec![1, 1, 1, 3],
//!     merges: vec!["h i".into()],
//!     eos: Some(3),
//!     ..GgufVocab::default()
//! };
//! let tokenizer = vocab.tokenizer()?;
//! let ids = tokenizer.encode("hi<|end|>", true).unwrap().get_ids().to_vec();
//! assert_eq!(ids, [2, 3]);
//! # Ok::<(), moe_gpu::Error>(())
//! ```

use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::{vocab_bpe, vocab_spm};
use crate::error::{Error, Result};

/// The `tokenizer.*` metadata of a GGUF file, as plain data.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer (`qwen2`, `llama-bpe`, `deepseek-v3`, ...);
    /// llama.cpp's `default` where absent.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte; 0 undefined, read as normal), by id; empty where absent (every token normal).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities), by id; may be empty.
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.merges` (gpt2): `"left right"` pairs, highest priority first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece; llama.cpp's default is true).
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template`: the Jinja chat template.
    pub chat_template: Option<String>,
}

/// A token's `tokenizer.ggml.token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            // 0 is llama.cpp's "undefined", which it treats as a normal token.
            0 | 1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }
}

/// The tokenizer algorithms llama.cpp names in `tokenizer.ggml.model` that we build.
const MODELS: [&str; 2] = ["gpt2", "llama"];

impl GgufVocab {
    /// The tokenizer this metadata describes; inconsistent metadata (lengths that differ,
    /// ids out of range, malformed merges, an unknown model or pre-tokenizer) is an error
    /// naming the key.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        if self.tokens.iter().any(String::is_empty) {
            // llama.cpp names an empty token `[EMPTY_<id>]`, so no text matches it.
            let mut named = self.clone();
            for (id, t) in named.tokens.iter_mut().enumerate() {
                if t.is_empty() {
                    *t = format!("[EMPTY_{id}]");
                }
            }
            return named.tokenizer();
        }
        let types = self.checked_types()?;
        self.check_ids()?;
        let mut tokenizer = match self.model.as_str() {
            "gpt2" => vocab_bpe::build(&self.tokens, &self.merges, self.pre_name())?,
            "llama" => {
                self.check_scores()?;
                // llama.cpp's default unknown token is id 0.
                let unk = self.unk.or(Some(0)).filter(|&id| self.in_range(id));
                let byte_fallback = types.contains(&TokenType::Byte);
                let space_prefix = self.add_space_prefix.unwrap_or(true);
                vocab_spm::build(&self.tokens, &self.scores, unk, byte_fallback, space_prefix)?
            }
            other => {
                return Err(Error::input(format!(
                    "GGUF tokenizer.ggml.model {other:?} is not supported; supported: {}",
                    MODELS.join(", ")
                )));
            }
        };
        let added: Vec<AddedToken> = self
            .tokens
            .iter()
            .zip(&types)
            .filter_map(|(text, ty)| {
                let special = match ty {
                    TokenType::Control | TokenType::Unknown => true,
                    TokenType::UserDefined => false,
                    _ => return None,
                };
                Some(AddedToken::from(text.clone(), special).normalized(false))
            })
            .collect();
        tokenizer.add_special_tokens(&added);
        if let Some(post) = self.post_processor()? {
            tokenizer.with_post_processor(Some(post));
        }
        Ok(tokenizer)
    }

    /// The BOS id llama.cpp uses: the file's, else its default for the model (1 for `llama`,
    /// 11 for `gpt2`) where that id exists.
    pub fn bos_id(&self) -> Option<u32> {
        let default = match self.model.as_str() {
            "llama" => Some(1),
            "gpt2" => Some(11),
            _ => None,
        };
        self.bos.or(default).filter(|&id| self.in_range(id))
    }

    /// The EOS id llama.cpp uses: the file's, else its default for the model (2 for `llama`,
    /// 11 for `gpt2`) where that id exists.
    pub fn eos_id(&self) -> Option<u32> {
        let default = match self.model.as_str() {
            "llama" => Some(2),
            "gpt2" => Some(11),
            _ => None,
        };
        self.eos.or(default).filter(|&id| self.in_range(id))
    }

    /// Whether encoding adds BOS: the file's `add_bos_token`, else llama.cpp's default (true
    /// for `llama` and for the Llama-3 family of `gpt2` pre-tokenizers).
    pub fn adds_bos(&self) -> bool {
        self.add_bos.unwrap_or_else(|| {
            self.model == "llama"
                || (self.model == "gpt2" && vocab_bpe::adds_bos_by_default(self.pre_name()))
        })
    }

    /// `tokenizer.ggml.pre`, `default` where absent.
    fn pre_name(&self) -> &str {
        self.pre.as_deref().unwrap_or("default")
    }

    /// The text of token `id`; `None` out of range.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    fn in_range(&self, id: u32) -> bool {
        (id as usize) < self.tokens.len()
    }

    /// The token types, checked against the tokens; all normal where the file has none.
    fn checked_types(&self) -> Result<Vec<TokenType>> {
        if self.tokens.is_empty() {
            return Err(Error::input("GGUF tokenizer.ggml.tokens is empty"));
        }
        if u32::try_from(self.tokens.len()).is_err() {
            return Err(Error::input(format!(
                "GGUF tokenizer.ggml.tokens has {} entries, more than u32 ids can name",
                self.tokens.len()
            )));
        }
        if self.token_types.is_empty() {
            return Ok(vec![TokenType::Normal; self.tokens.len()]);
        }
        if self.token_types.len() != self.tokens.len() {
            return Err(Error::input(format!(
                "GGUF tokenizer.ggml.token_type has {} entries, tokenizer.ggml.tokens {}",
                self.token_types.len(),
                self.tokens.len()
            )));
        }
        self.token_types
            .iter()
            .enumerate()
            .map(|(id, &code)| {
                TokenType::from_code(code).ok_or_else(|| {
                    Error::input(format!(
                        "GGUF tokenizer.ggml.token_type[{id}] = {code} is not a token type (0-6)"
                    ))
                })
            })
            .collect()
    }

    /// One score per token, none NaN.
    fn check_scores(&self) -> Result<()> {
        if self.scores.len() != self.tokens.len() {
            return Err(Error::input(format!(
                "GGUF tokenizer.ggml.scores has {} entries, tokenizer.ggml.tokens {}",
                self.scores.len(),
                self.tokens.len()
            )));
        }
        match self.scores.iter().position(|s| s.is_nan()) {
            Some(id) => Err(Error::input(format!(
                "GGUF tokenizer.ggml.scores[{id}] is NaN"
            ))),
            None => Ok(()),
        }
    }

    /// Every special id the file sets names a token.
    fn check_ids(&self) -> Result<()> {
        let keys = [
            ("bos_token_id", self.bos),
            ("eos_token_id", self.eos),
            ("unknown_token_id", self.unk),
            ("padding_token_id", self.pad),
        ];
        for (key, id) in keys {
            if let Some(id) = id.filter(|&id| !self.in_range(id)) {
                return Err(Error::input(format!(
                    "GGUF tokenizer.ggml.{key} = {id} is out of range: the vocab has {} tokens",
                    self.tokens.len()
                )));
            }
        }
        Ok(())
    }

    /// BOS before and EOS after the text, as `add_bos`/`add_eos` say.
    fn post_processor(&self) -> Result<Option<TemplateProcessing>> {
        let mut specials = Vec::new();
        if self.adds_bos() {
            let id = self.bos_id().ok_or_else(|| {
                Error::input(format!(
                    "GGUF vocab adds BOS but has no BOS token (tokenizer.ggml.bos_token_id \
                     absent and llama.cpp's default for {:?} out of range)",
                    self.model
                ))
            })?;
            specials.push((true, id));
        }
        if self.add_eos == Some(true) {
            let id = self.eos_id().ok_or_else(|| {
                Error::input(
                    "GGUF vocab adds EOS but has no EOS token (tokenizer.ggml.eos_token_id)",
                )
            })?;
            specials.push((false, id));
        }
        if specials.is_empty() {
            return Ok(None);
        }
        let piece = |id: u32| serde_json::json!({"SpecialToken": {"id": self.tokens[id as usize], "type_id": 0}});
        let seq = |s: &str| serde_json::json!({"Sequence": {"id": s, "type_id": 0}});
        let template = |s: &str| {
            let before = specials
                .iter()
                .filter(|(b, _)| *b)
                .map(|&(_, id)| piece(id));
            let after = specials
                .iter()
                .filter(|(b, _)| !*b)
                .map(|&(_, id)| piece(id));
            before
                .chain([seq(s)])
                .chain(after)
                .collect::<Vec<serde_json::Value>>()
        };
        let special_tokens: serde_json::Map<String, serde_json::Value> = specials
            .iter()
            .map(|&(_, id)| {
                let text = &self.tokens[id as usize];
                (
                    text.clone(),
                    serde_json::json!({"id": text, "ids": [id], "tokens": [text]}),
                )
            })
            .collect();
        let pair = [template("A"), template("B")].concat();
        let value = serde_json::json!({
            "type": "TemplateProcessing",
            "single": template("A"),
            "pair": pair,
            "special_tokens": special_tokens,
        });
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| Error::input(format!("GGUF vocab: BOS/EOS template: {e}")))
    }
}
