//! The body of a completion request: parsed with the path of a wrongly typed field kept for
//! the error, then checked and turned into a scheduler [`Request`].

use std::time::{SystemTime, UNIX_EPOCH};

use moe_gpu::ChatMessage;
use moe_gpu::Sampling;
use moe_gpu::serve::Request;
use serde::Deserialize;

use super::error::ApiError;
use super::state::AppState;

/// The fields of `/v1/chat/completions` and `/v1/completions` that this server reads; others
/// are ignored, as OpenAI-compatible servers do.
#[derive(Deserialize)]
pub struct Body {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    prompt: Option<Prompt>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
    stop: Option<Stop>,
    n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Content,
}

/// A message's content: text, or a list of parts of which the text parts are joined.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Which endpoint a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

/// A checked request, ready for the scheduler.
pub struct Checked {
    pub request: Request,
    pub stream: bool,
    pub include_usage: bool,
}

impl Body {
    /// Parses JSON bytes, naming the field at fault when one has the wrong type.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}"), None))?;
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let param = (path != ".").then_some(path.as_str());
            let at = param.map(|p| format!("`{p}`: ")).unwrap_or_default();
            ApiError::invalid(format!("{at}{}", e.inner()), param)
        })
    }

    /// Checks the fields and encodes the prompt.
    pub fn check(self, endpoint: Endpoint, state: &AppState) -> Result<Checked, ApiError> {
        let model = self
            .model
            .as_deref()
            .ok_or_else(|| ApiError::invalid("missing field `model`", Some("model")))?;
        if model != state.model_id {
            return Err(ApiError::unknown_model(model, &state.model_id));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("only n = 1 is supported", Some("n")));
        }
        let (prompt, param) = match endpoint {
            Endpoint::Chat => (self.chat_prompt(state)?, "messages"),
            Endpoint::Completions => (self.completion_prompt(state)?, "prompt"),
        };
        let context = state.scheduler.context();
        if prompt.is_empty() {
            return Err(ApiError::invalid(
                "the prompt is empty (no tokens)",
                Some(param),
            ));
        }
        if prompt.len() > context {
            return Err(ApiError::invalid(
                format!(
                    "the prompt has {} tokens, more than the context of {context} tokens",
                    prompt.len()
                ),
                Some(param),
            )
            .with_code("context_length_exceeded"));
        }
        let max_tokens = match self.max_tokens.or(self.max_completion_tokens) {
            Some(n) if n <= 0 => {
                return Err(ApiError::invalid(
                    format!("max_tokens must be at least 1, not {n}"),
                    Some("max_tokens"),
                ));
            }
            Some(n) => n as usize,
            None => context + 1 - prompt.len(),
        };
        let stop = match self.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) if v.len() <= 4 => v,
            Some(Stop::Many(_)) => {
                return Err(ApiError::invalid("at most 4 stop strings", Some("stop")));
            }
        };
        Ok(Checked {
            request: Request {
                prompt,
                max_tokens,
                sampling: sampling(self.temperature, self.top_p, self.seed)?,
                stop_tokens: state.stop_tokens.clone(),
                stop,
            },
            stream: self.stream,
            include_usage: self.stream_options.and_then(|o| o.include_usage) == Some(true),
        })
    }

    fn chat_prompt(&self, state: &AppState) -> Result<Vec<u32>, ApiError> {
        let messages = self
            .messages
            .as_ref()
            .ok_or_else(|| ApiError::invalid("missing field `messages`", Some("messages")))?;
        if messages.is_empty() {
            return Err(ApiError::invalid("`messages` is empty", Some("messages")));
        }
        let template = state.template.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "the model has no chat template (chat_template.jinja or tokenizer_config.json); \
                 use /v1/completions",
                None,
            )
        })?;
        let messages: Vec<ChatMessage> = messages
            .iter()
            .map(|m| ChatMessage::new(&m.role, &m.content.text()))
            .collect();
        let text = template
            .render(&messages, true)
            .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?;
        state
            .tokenizer
            .encode_raw(&text)
            .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))
    }

    fn completion_prompt(&self, state: &AppState) -> Result<Vec<u32>, ApiError> {
        let text = match &self.prompt {
            Some(Prompt::One(s)) => s,
            Some(Prompt::Many(v)) if v.len() == 1 => &v[0],
            Some(Prompt::Many(_)) => {
                return Err(ApiError::invalid(
                    "only one prompt per request is supported",
                    Some("prompt"),
                ));
            }
            None => return Err(ApiError::invalid("missing field `prompt`", Some("prompt"))),
        };
        state
            .tokenizer
            .encode(text)
            .map_err(|e| ApiError::invalid(e.to_string(), Some("prompt")))
    }
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect(),
        }
    }
}

/// Greedy at temperature 0, else a draw seeded by `seed` (by the clock without one).
fn sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
) -> Result<Sampling, ApiError> {
    let temperature = temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("temperature {temperature} must be in [0, 2]"),
            Some("temperature"),
        ));
    }
    if let Some(p) = top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        return Err(ApiError::invalid(
            format!("top_p {p} must be in (0, 1]"),
            Some("top_p"),
        ));
    }
    if temperature == 0.0 {
        return Ok(Sampling::Greedy);
    }
    let seed = seed.map_or_else(
        || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        },
        |s| s as u64,
    );
    Ok(Sampling::Random {
        temperature,
        top_k: None,
        top_p,
        seed,
    })
}
