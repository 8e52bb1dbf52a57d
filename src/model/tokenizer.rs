//! Text in and out through the checkpoint's tokenizer.json (Hugging Face `tokenizers`, pure
//! Rust). Plain prompts are encoded with the tokenizer's own special tokens (e.g. BOS); a prompt
//! rendered by the chat template ([`ChatTemplate`](crate::model::ChatTemplate)) already holds
//! its special tokens and is encoded as it is.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A Hugging Face tokenizer (tokenizer.json).
pub struct Tokenizer {
    path: PathBuf,
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Reads `dir/tokenizer.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Tokenizer {
                path,
                message: "not found: the model directory has no tokenizer.json \
                          (pass token ids with --prompt-ids instead)"
                    .into(),
            });
        }
        Self::from_file(&path)
    }

    /// Reads a tokenizer.json at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            inner,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Token ids of `text`, with the special tokens the tokenizer adds (BOS for many models).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, true).map_err(|e| self.error(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` as it is, adding no special tokens (for chat-template output).
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| self.error(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| self.error(e))
    }
}

/// Turns a stream of token ids into a stream of text: each call returns what the new token
/// added, holding back text while the tokens so far end inside a multi-byte character.
pub struct TextStream<'t> {
    tokenizer: &'t Tokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl<'t> TextStream<'t> {
    /// An empty stream over `tokenizer`.
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            emitted: 0,
        }
    }

    /// The new text after appending `id` (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{fffd}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let new = text
            .get(self.emitted..)
            .map(str::to_string)
            .unwrap_or_default();
        self.emitted = text.len();
        Ok(new)
    }

    /// All text so far.
    pub fn text(&self) -> Result<String> {
        self.tokenizer.decode(&self.ids)
    }
}
