//! `moe serve` end to end over plain HTTP, and `moe chat` on piped stdin: OpenAI's endpoints,
//! streamed and plain answers alike, concurrent greedy requests equal to sequential ones, bad
//! requests answered with 4xx JSON while the server keeps serving, a client that leaves
//! mid-stream freeing its slot, the API key, and SIGTERM.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::serve_client::{KEY, Server, chat_model};

fn chat(model: &str, content: &str, max_tokens: i64) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}],
           "max_tokens": max_tokens, "temperature": 0})
}

fn completion(model: &str, prompt: &str, max_tokens: i64) -> Value {
    json!({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
}

/// The text of a streamed answer and its last chunk with a finish reason.
fn streamed_text(chunks: &[String], chat: bool) -> (String, Value) {
    assert_eq!(chunks.last().map(String::as_str), Some("[DONE]"));
    let parsed: Vec<Value> = chunks[..chunks.len() - 1]
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    let text = parsed
        .iter()
        .map(|c| match chat {
            true => c["choices"][0]["delta"]["content"].as_str().unwrap_or(""),
            false => c["choices"][0]["text"].as_str().unwrap(),
        })
        .collect();
    let last = parsed.last().unwrap().clone();
    (text, last)
}

fn check_usage(v: &Value, prompt_tokens: Option<u64>) {
    let u = &v["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(u["total_tokens"].as_u64(), Some(p + c), "{v}");
    assert!(c >= 1, "{v}");
    if let Some(expected) = prompt_tokens {
        assert_eq!(p, expected, "{v}");
    }
}

#[test]
fn serve_answers_openai_requests_and_survives_bad_ones() {
    let server = Server::start(&chat_model(), &["--api-key", KEY, "--max-queue", "8"]);
    let (status, health) = server.get("/health", None);
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );
    for key in [None, Some("wrong")] {
        let (status, v) = server.get("/v1/models", key);
        assert_eq!(status, 401, "{v}");
        assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
    }
    let (_, models) = server.get("/v1/models", Some(KEY));
    assert_eq!(models["object"], "list");
    let id = models["data"][0]["id"].as_str().unwrap().to_string();

    // Chat, plain and streamed.
    let body = chat(&id, "w5 w17 w42", 10);
    let plain = server.ok("/v1/chat/completions", &body);
    assert_eq!(plain["object"], "chat.completion");
    let choice = &plain["choices"][0];
    let text = choice["message"]["content"].as_str().unwrap().to_string();
    assert_eq!(choice["message"]["role"], "assistant");
    check_usage(&plain, None);
    let chunks = server.stream("/v1/chat/completions", &body);
    let first: Value = serde_json::from_str(&chunks[0]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let (streamed, last) = streamed_text(&chunks, true);
    assert_eq!(streamed, text);
    assert_eq!(last["choices"][0]["finish_reason"], choice["finish_reason"]);

    // Completions, plain and streamed, and a stop string.
    let body = completion(&id, "w5 w6 w7", 8);
    let plain = server.ok("/v1/completions", &body);
    assert_eq!(plain["object"], "text_completion");
    check_usage(&plain, Some(3));
    let text = plain["choices"][0]["text"].as_str().unwrap().to_string();
    let (streamed, _) = streamed_text(&server.stream("/v1/completions", &body), false);
    assert_eq!(streamed, text);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(
        words.len() >= 3,
        "`{text}`: too short to check a stop string"
    );
    let mut stopped = body.clone();
    stopped["stop"] = json!([words[2]]);
    let v = server.ok("/v1/completions", &stopped);
    assert_eq!(
        v["choices"][0]["text"],
        text[..text.find(words[2]).unwrap()]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Concurrent greedy requests, each equal to its sequential answer.
    let prompts: Vec<String> = (0..8)
        .map(|i| format!("w{} w{}", 3 + i * 40, 7 + i))
        .collect();
    let sequential: Vec<Value> = prompts
        .iter()
        .map(|p| server.ok("/v1/completions", &completion(&id, p, 6))["choices"][0]["text"].clone())
        .collect();
    for n in [4, 8] {
        let concurrent: Vec<Value> = std::thread::scope(|s| {
            let handles: Vec<_> = prompts[..n]
                .iter()
                .map(|p| s.spawn(|| server.ok("/v1/completions", &completion(&id, p, 6))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap()["choices"][0]["text"].clone())
                .collect()
        });
        assert_eq!(concurrent, sequential[..n], "{n} concurrent requests");
    }

    bad_requests_get_4xx_json(&server, &id);
    client_leaving_mid_stream_frees_its_slot(&server, &id);

    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("shut down"), "{stderr}");
}

fn bad_requests_get_4xx_json(server: &Server, id: &str) {
    let long: Vec<String> = (0..600).map(|i| format!("w{}", 1 + i % 300)).collect();
    let mut wrong_model = completion(id, "w5", 4);
    wrong_model["model"] = json!("gpt-4o");
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/v1/chat/completions", "{not json".into(), 400, None),
        (
            "/v1/chat/completions",
            json!({"model": id}).to_string(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"model": id, "messages": "hi"}).to_string(),
            400,
            Some("messages"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "w5"}).to_string(),
            400,
            Some("model"),
        ),
        (
            "/v1/completions",
            json!({"model": id, "prompt": "w5", "max_tokens": "ten"}).to_string(),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            completion(id, &long.join(" "), 4).to_string(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            completion(id, "w5", 0).to_string(),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/chat/completions",
            chat(id, "w5", -3).to_string(),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            json!({"model": id, "prompt": "w5", "temperature": 9}).to_string(),
            400,
            Some("temperature"),
        ),
        (
            "/v1/completions",
            wrong_model.to_string(),
            404,
            Some("model"),
        ),
        ("/v1/nothing", "{}".into(), 404, None),
    ];
    for (path, body, status, param) in cases {
        let (got, v) = server.post_raw(path, &body);
        assert_eq!(got, status, "{path} {body}: {v}");
        let e = &v["error"];
        assert!(!e["message"].as_str().unwrap().is_empty(), "{v}");
        assert!(e["type"].is_string() && e.get("code").is_some(), "{v}");
        assert_eq!(e["param"].as_str(), param, "{body}: {v}");
        assert_eq!(server.get("/health", None).0, 200);
    }
    let (_, v) = server.post_raw(
        "/v1/completions",
        &completion(id, &long.join(" "), 4).to_string(),
    );
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    let (status, v) = server.get("/v1/completions", Some(KEY));
    assert_eq!(status, 405, "{v}");
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    server.ok("/v1/completions", &completion(id, "w5", 2));
}

fn client_leaving_mid_stream_frees_its_slot(server: &Server, id: &str) {
    let body = completion(id, "w9 w8", 300);
    let full = server.ok("/v1/completions", &body);
    assert_eq!(full["usage"]["completion_tokens"], 300, "{full}");
    let before = server.get("/health", None).1["generated_tokens"]
        .as_u64()
        .unwrap();

    drop(server.open_stream("/v1/completions", &body)); // the client leaves
    let health = server.wait_health("the slot is freed", |h| {
        h["running"] == 0 && h["waiting"] == 0
    });
    let generated = health["generated_tokens"].as_u64().unwrap() - before;
    assert!(
        generated < 300,
        "{generated} tokens generated for a client that left"
    );
    let v = server.ok("/v1/completions", &completion(id, "w5", 3));
    assert_eq!(v["usage"]["completion_tokens"], 3, "{v}");
}

#[test]
fn serve_answers_503_beyond_the_queue() {
    let server = Server::start(&chat_model(), &["--max-batch", "1", "--max-queue", "0"]);
    let id = server.get("/v1/models", None).1["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let running = server.open_stream("/v1/completions", &completion(&id, "w9 w8", 300));
    let (status, v) = server.post("/v1/completions", &completion(&id, "w5", 2));
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "server_busy", "{v}");
    drop(running);
    server.wait_health("the slot is freed", |h| {
        h["running"] == 0 && h["waiting"] == 0
    });
    server.ok("/v1/completions", &completion(&id, "w5", 2));
}

#[test]
fn chat_reads_piped_messages_and_keeps_the_history() {
    let model = chat_model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moe"))
        .args([
            "chat",
            "--model",
            model.to_str().unwrap(),
            "--max-new-tokens",
            "6",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = "w5 w17 w42\nw9\n/reset\nw5 w17 w42\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(answers.len(), 3, "{stdout}");
    assert_eq!(stderr.matches("tokens/s").count(), 3, "{stderr}");
    // The first turn prefills everything; the second finds the first turn in the KV cache,
    // and after /reset the template's opening tokens at least.
    let cached: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.split("; ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        cached.len() == 3 && cached[0] == 0 && cached[1] > 3 && cached[2] > 0,
        "{stderr}"
    );
    // After /reset the same message gets the same greedy answer, the one `moe generate` gives.
    assert_eq!(answers[0], answers[2]);
    let generate = Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(["generate", "--model", model.to_str().unwrap(), "--chat"])
        .args(["--prompt", "w5 w17 w42", "--max-new-tokens", "6"])
        .output()
        .unwrap();
    assert!(
        generate.status.success(),
        "{}",
        String::from_utf8_lossy(&generate.stderr)
    );
    assert_eq!(
        String::from_utf8(generate.stdout).unwrap().trim_end(),
        answers[0]
    );
}
