//! Text in and out through the checkpoint's tokenizer.json (Hugging Face `tokenizers`, pure
//! Rust). Plain prompts are encoded with the tokenizer's own special tokens (e.g. BOS); a prompt
//! rendered by the chat template ([`ChatTemplate`](crate::model::ChatTemplate)) already holds
//! its special tokens and is encoded as it is.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufVocab, is_gguf};

/// A Hugging Face tokenizer (tokenizer.json).
pub struct Tokenizer {
    path: PathBuf,
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// Reads `dir/tokenizer.json`, or the tokenizer in the metadata of `dir` where it is a
    /// `.gguf` file.
    pub fn load(dir: &Path) -> Result<Self> {
        if is_gguf(dir) {
            return Self::from_gguf(dir);
        }
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Tokenizer {
                path,
                message: "not found: the model directory has no tokenizer.json, so give \
                          token ids instead of text (`moe generate --prompt-ids`; a --data \
                          file of whitespace- or comma-separated ids)"
                    .into(),
            });
        }
        Self::from_file(&path)
    }

    /// Whether the model at `dir` has a tokenizer: a tokenizer.json, or the metadata of a GGUF
    /// file (which holds one whenever it has `tokenizer.ggml.model`).
    pub fn exists(dir: &Path) -> bool {
        if is_gguf(dir) {
            return GgufFile::open(dir).is_ok_and(|g| g.get("tokenizer.ggml.model").is_some());
        }
        dir.join("tokenizer.json").is_file()
    }

    /// The tokenizer of a GGUF file's metadata ([`GgufVocab`]).
    pub fn from_gguf(path: &Path) -> Result<Self> {
        let g = GgufFile::open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            inner: GgufVocab::read(&g)?.tokenizer()?,
        })
    }

    /// Reads a tokenizer.json at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        // `tokenizers` panics on some malformed files (e.g. a bad decoder entry) instead of
        // returning its error (found by the loaders fuzz harness): report those as errors too.
        let loaded = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_file(path));
        let inner = match loaded {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(p) => Err(format!("malformed tokenizer.json: {}", panic_text(&*p))),
        }
        .map_err(|message| Error::Tokenizer {
            path: path.to_path_buf(),
            message,
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

    /// Runs a `tokenizers` call, its error or panic (a malformed tokenizer.json can make it
    /// panic, e.g. a post-processor naming an unknown special token) turned into ours.
    fn guard<T, E: std::fmt::Display>(
        &self,
        f: impl FnOnce() -> std::result::Result<T, E>,
    ) -> Result<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => r.map_err(|e| self.error(e)),
            Err(p) => Err(self.error(format!("malformed tokenizer.json: {}", panic_text(&*p)))),
        }
    }

    /// Token ids of `text`, with the special tokens the tokenizer adds (BOS for many models).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.guard(|| self.inner.encode(text, true))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` as it is, adding no special tokens (for chat-template output).
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.guard(|| self.inner.encode(text, false))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.guard(|| self.inner.decode(ids, true))
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

/// The message of a caught panic.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the parser panicked".into())
}
