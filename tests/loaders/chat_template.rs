//! Chat templates against transformers: the expected prompts below are what transformers 5.23's
//! `apply_chat_template(messages, add_generation_prompt=..., tokenize=False)` returned for the
//! same templates (Mixtral-8x7B-Instruct's own, a ChatML one with `.strip()` and whitespace
//! control, one that relies on `trim_blocks`/`lstrip_blocks`, and a Qwen3-style one), with
//! bos_token `<s>` and eos_token `</s>`; and `moe generate --chat` encodes what they render.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use moe_gpu::{ChatMessage, ChatTemplate};
use serde_json::{Value, json};

use crate::common::edit::temp_dir;
use crate::common::fixtures::Fixture;
use crate::common::text::model_with_tokenizer;

const MIXTRAL: &str = r#"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"#;

const CHATML: &str = r#"{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'].strip() + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" %}
    {{- '<|im_start|>user\n' + message.content + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

const BLOCKS: &str = r#"{% for m in messages %}
  <{{ m.role }}>{{ m.content | trim }}{% if not loop.last %}|{% endif %}

{% endfor %}
{% if add_generation_prompt %}<assistant>{% endif %}
"#;

/// A model directory holding only tokenizer_config.json with `config`.
fn config_dir(config: Value) -> PathBuf {
    let d = temp_dir("chat-template");
    std::fs::write(d.join("tokenizer_config.json"), config.to_string()).unwrap();
    d
}

fn template(dir: &Path) -> ChatTemplate {
    ChatTemplate::load(dir).unwrap().expect("a chat template")
}

fn user() -> Vec<ChatMessage> {
    vec![ChatMessage::new("user", "  Hello there  ")]
}

fn system_user() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", " Be brief. "),
        ChatMessage::new("user", "Hi"),
    ]
}

#[test]
fn templates_render_as_transformers_renders_them() {
    let cases: [(&str, Vec<ChatMessage>, bool, &str); 10] = [
        (MIXTRAL, user(), true, "<s>[INST]   Hello there   [/INST]"),
        (MIXTRAL, user(), false, "<s>[INST]   Hello there   [/INST]"),
        (
            CHATML,
            user(),
            true,
            "<|im_start|>user\n  Hello there  <|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            CHATML,
            user(),
            false,
            "<|im_start|>user\n  Hello there  <|im_end|>\n",
        ),
        (
            CHATML,
            system_user(),
            true,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            CHATML,
            system_user(),
            false,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
        ),
        (BLOCKS, user(), true, "  <user>Hello there\n<assistant>"),
        (BLOCKS, user(), false, "  <user>Hello there\n"),
        (
            BLOCKS,
            system_user(),
            true,
            "  <system>Be brief.|\n  <user>Hi\n<assistant>",
        ),
        (
            BLOCKS,
            system_user(),
            false,
            "  <system>Be brief.|\n  <user>Hi\n",
        ),
    ];
    for (source, messages, generation, want) in cases {
        // bos/eos as plain strings in one directory and as added-token objects in the other.
        let plain =
            config_dir(json!({"chat_template": source, "bos_token": "<s>", "eos_token": "</s>"}));
        let objects = config_dir(json!({
            "chat_template": source,
            "bos_token": {"content": "<s>", "special": true},
            "eos_token": {"content": "</s>", "special": true}
        }));
        for dir in [plain, objects] {
            let got = template(&dir).render(&messages, generation).unwrap();
            assert_eq!(got, want, "{source}");
        }
    }
}

/// A Qwen3-style template written for this test (tests/fixtures/chat/qwen_like.jinja): a
/// namespace updated in a reversed loop, `is string` / `is defined` tests, `.get()`,
/// `.split()[-1]`, `.lstrip()` / `.rstrip()` / `.strip()` with arguments, an undefined `tools`,
/// and a reasoning block that only the turns after the last user query keep.
#[test]
fn a_qwen3_style_template_renders_as_transformers_renders_it() {
    let d = temp_dir("chat-qwen-like");
    std::fs::write(
        d.join("chat_template.jinja"),
        include_str!("../fixtures/chat/qwen_like.jinja"),
    )
    .unwrap();
    let t = template(&d);
    let turn = |role: &str, content: &str| ChatMessage::new(role, content);
    let cases = [
        (
            vec![turn("user", "Hi there")],
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            vec![turn("system", "Be brief."), turn("user", "Hi")],
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            vec![
                turn("user", "a"),
                turn("assistant", "<think>\nx\n</think>\n\nb"),
                turn("user", "c"),
            ],
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n",
        ),
    ];
    for (messages, want) in cases {
        assert_eq!(t.render(&messages, true).unwrap(), want);
    }
}

#[test]
fn the_template_comes_from_chat_template_jinja_or_the_default_of_a_list() {
    let d = config_dir(json!({"chat_template": "ignored", "bos_token": "<s>"}));
    std::fs::write(d.join("chat_template.jinja"), MIXTRAL).unwrap();
    assert_eq!(
        template(&d).render(&user(), true).unwrap(),
        "<s>[INST]   Hello there   [/INST]"
    );
    let d = config_dir(json!({
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": CHATML}
        ]
    }));
    assert_eq!(
        template(&d).render(&user(), false).unwrap(),
        "<|im_start|>user\n  Hello there  <|im_end|>\n"
    );
    // tojson and the loop controls of transformers' jinja environment (expected: its output).
    let d = config_dir(json!({
        "chat_template": "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m | tojson }}|{{ m | tojson(indent=2) }}{% endfor %}"
    }));
    assert_eq!(
        template(&d)
            .render(
                &[
                    ChatMessage::new("system", " Be brief. é"),
                    ChatMessage::new("user", "Hi"),
                ],
                false
            )
            .unwrap(),
        "{\"role\": \"system\", \"content\": \" Be brief. é\"}|{\n  \"role\": \"system\",\n  \"content\": \" Be brief. é\"\n}"
    );
    assert!(
        ChatTemplate::load(&config_dir(json!({"bos_token": "<s>"})))
            .unwrap()
            .is_none()
    );
    assert!(
        ChatTemplate::load(&temp_dir("no-config"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn template_errors_name_the_file_and_the_cause() {
    // Mixtral's template refuses a system turn with raise_exception, as transformers does.
    let d = config_dir(json!({"chat_template": MIXTRAL, "bos_token": "<s>"}));
    let err = template(&d)
        .render(&system_user(), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizer_config.json")
            && err.contains("Conversation roles must alternate user/assistant/user/assistant/..."),
        "{err}"
    );
    let d = config_dir(json!({"chat_template": "{% for m in messages %}{{ m.content }}"}));
    let err = template(&d).render(&user(), true).unwrap_err().to_string();
    assert!(
        err.contains("chat template") && err.contains("tokenizer_config.json"),
        "{err}"
    );
    let d = temp_dir("bad-config");
    std::fs::write(d.join("tokenizer_config.json"), "{ not json").unwrap();
    let err = ChatTemplate::load(&d).err().unwrap().to_string();
    assert!(err.contains("tokenizer_config.json"), "{err}");
}

/// `--chat` sends the prompt (and `--system`) through tokenizer_config.json's template and
/// encodes the result as it is: the template's `bos_token` is the only BOS.
#[test]
fn cli_applies_the_chat_template() {
    let fx = Fixture::open("hf-tiny", "olmoe");
    let model = model_with_tokenizer(&fx);
    let ids = |extra: &[&str]| -> Vec<u64> {
        let mut args = vec!["--prompt", "hello world", "--max-new-tokens", "1", "--json"];
        args.extend_from_slice(extra);
        let out = generate(&model, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_value(last_json(&out)["prompt_ids"].clone()).unwrap()
    };
    let err = generate(&model, &["--prompt", "hello", "--chat"]);
    assert!(
        !err.status.success() && stderr(&err).contains("no chat template"),
        "{}",
        stderr(&err)
    );
    let template = "{{ bos_token }}{% for m in messages %}mixture {{ m.content }} {% endfor %}\
                    {% if add_generation_prompt %}experts{% endif %}";
    std::fs::write(
        model.join("tokenizer_config.json"),
        json!({"chat_template": template, "bos_token": "<s>"}).to_string(),
    )
    .unwrap();
    assert_eq!(ids(&[]), [1, 2, 3]);
    assert_eq!(ids(&["--chat"]), [1, 4, 2, 3, 6]);
    assert_eq!(ids(&["--chat", "--system", "of"]), [1, 4, 5, 4, 2, 3, 6]);
}

fn generate(model: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(["generate", "--model", model.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON object on the last line of stdout.
fn last_json(o: &Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap()
}
