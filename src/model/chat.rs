//! Chat templates: the checkpoint's Jinja `chat_template` rendered the way transformers'
//! `apply_chat_template(messages, add_generation_prompt=True, tokenize=False)` renders it.
//!
//! The template comes from `chat_template.jinja` (transformers ≥ 4.43 saves it there) or else
//! the `chat_template` field of `tokenizer_config.json` (a string, or a list of named templates
//! of which `default` is used). Templates see `messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token` and `raise_exception(msg)`, and may call Python string methods
//! (`.strip()`, `.startswith()`, ...), as the templates of real checkpoints do; blocks are
//! trimmed as transformers' `trim_blocks` and `lstrip_blocks` trim them; `tojson` writes what
//! transformers' does (Python's `json.dumps`), and the loop controls `{% break %}` /
//! `{% continue %}` are there as in transformers' environment. The rendered
//! text already holds the special tokens, so it is encoded without adding more
//! ([`Tokenizer::encode_raw`](crate::model::Tokenizer::encode_raw)).

use std::path::{Path, PathBuf};

use minijinja::value::Kwargs;
use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, is_gguf};

/// One turn of a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role` with `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A checkpoint's chat template with the special tokens it refers to.
pub struct ChatTemplate {
    /// Where the template was read from, for errors.
    path: PathBuf,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// The template of the model in `dir`, or `None` where the checkpoint has none; a GGUF
    /// file's is `tokenizer.chat_template`.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        if is_gguf(dir) {
            return Self::from_gguf(dir);
        }
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = if config_path.is_file() {
            let text = std::fs::read_to_string(&config_path).map_err(|e| Error::Io {
                path: config_path.clone(),
                cause: e,
            })?;
            serde_json::from_str(&text).map_err(|e| template_error(&config_path, e))?
        } else {
            serde_json::Value::Null
        };
        let jinja_path = dir.join("chat_template.jinja");
        let (path, source) = if jinja_path.is_file() {
            let text = std::fs::read_to_string(&jinja_path).map_err(|e| Error::Io {
                path: jinja_path.clone(),
                cause: e,
            })?;
            (jinja_path, text)
        } else {
            match template_field(&config["chat_template"]) {
                Some(t) => (config_path, t),
                None => return Ok(None),
            }
        };
        Ok(Some(Self {
            path,
            source,
            bos_token: special_token(&config["bos_token"]),
            eos_token: special_token(&config["eos_token"]),
        }))
    }

    fn from_gguf(path: &Path) -> Result<Option<Self>> {
        let g = GgufFile::open(path)?;
        let Some(source) = g.string_opt("tokenizer.chat_template")? else {
            return Ok(None);
        };
        let tokens = g.strings("tokenizer.ggml.tokens")?;
        let token = |key: &str| -> Result<String> {
            let id = g.u64_opt(key)?;
            Ok(id
                .and_then(|i| tokens.get(i as usize))
                .map_or(String::new(), |t| t.to_string()))
        };
        Ok(Some(Self {
            path: path.to_path_buf(),
            source: source.to_string(),
            bos_token: token("tokenizer.ggml.bos_token_id")?,
            eos_token: token("tokenizer.ggml.eos_token_id")?,
        }))
    }

    /// The prompt text of `messages`, ending with the assistant's turn opened when
    /// `add_generation_prompt` is set.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        // transformers compiles chat templates with both on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template("chat", &self.source)
            .map_err(|e| template_error(&self.path, describe(&e)))?;
        let template = env
            .get_template("chat")
            .map_err(|e| template_error(&self.path, describe(&e)))?;
        // minijinja panics on a few templates (e.g. `[::-1]` of an empty list) instead of
        // failing (found by the loaders fuzz harness); a template comes with the checkpoint, so
        // report that as a template error.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            template.render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
        }))
        .map_err(|p| {
            template_error(
                &self.path,
                format!(
                    "rendering failed inside minijinja: {}",
                    crate::model::tokenizer::panic_text(&*p)
                ),
            )
        })?
        .map_err(|e| template_error(&self.path, describe(&e)))
    }
}

/// `chat_template` as a string, or the `default` (else first) of a list of named templates.
fn template_field(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| list.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// A special token of tokenizer_config.json: a string, or an added-token object's `content`.
fn special_token(v: &serde_json::Value) -> String {
    v.as_str()
        .or_else(|| v["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// transformers' `tojson`: `json.dumps(value, ensure_ascii=False, indent=indent)`, so Python's
/// separators `, ` and `: ` (`,` and `: ` with an indent), keys in their order, non-ASCII kept,
/// and nothing HTML-escaped.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let written = match indent {
        Some(n) => {
            let spaces = " ".repeat(n);
            let format = PrettyFormatter::with_indent(spaces.as_bytes());
            value.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out, format,
            ))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PythonSeparators,
        )),
    };
    let fail = |e: &dyn std::fmt::Display| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}"))
    };
    written.map_err(|e| fail(&e))?;
    let text = String::from_utf8(out).map_err(|e| fail(&e))?;
    Ok(Value::from_safe_string(text))
}

/// JSON on one line with Python's default separators.
struct PythonSeparators;

/// `, ` before every array item or object entry but the first.
fn item_separator<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

impl Formatter for PythonSeparators {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// A minijinja error with its cause chain and line, on one line.
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn template_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Tokenizer {
        path: path.to_path_buf(),
        message: format!("chat template: {message}"),
    }
}
