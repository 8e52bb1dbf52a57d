//! Response bodies and stream chunks in OpenAI's formats.

use moe_gpu::model::FinishReason;
use moe_gpu::serve::Finish;
use serde_json::{Value, json};

use super::request::Endpoint;

/// What every chunk and response of one request repeats.
pub struct Meta {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
}

fn finish_reason(f: &Finish) -> &'static str {
    match f.reason {
        FinishReason::Stop => "stop",
        _ => "length",
    }
}

fn usage(f: &Finish) -> Value {
    json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
    })
}

impl Meta {
    fn object(&self, choices: Value, streamed: bool) -> Value {
        let object = match (self.endpoint, streamed) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// The whole answer of a request that did not stream.
    pub fn response(&self, text: &str, f: &Finish) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish_reason(f),
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": finish_reason(f),
            }),
        };
        let mut v = self.object(json!([choice]), false);
        v["usage"] = usage(f);
        v
    }

    /// A stream chunk of new text (`None`: the chat stream's opening chunk with the role).
    pub fn delta(&self, text: Option<&str>) -> Value {
        self.choice_chunk(text, None)
    }

    /// The stream chunk that carries the finish reason.
    pub fn last(&self, f: &Finish) -> Value {
        self.choice_chunk(Some(""), Some(finish_reason(f)))
    }

    /// The chunk with usage counts and no choices (`stream_options.include_usage`).
    pub fn usage(&self, f: &Finish) -> Value {
        let mut v = self.object(json!([]), true);
        v["usage"] = usage(f);
        v
    }

    fn choice_chunk(&self, text: Option<&str>, finish: Option<&str>) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let delta = match (text, finish) {
                    (None, _) => json!({"role": "assistant", "content": ""}),
                    (Some(_), Some(_)) => json!({}),
                    (Some(t), None) => json!({"content": t}),
                };
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Endpoint::Completions => json!({
                "index": 0,
                "text": text.unwrap_or_default(),
                "logprobs": null,
                "finish_reason": finish,
            }),
        };
        self.object(json!([choice]), true)
    }
}
