//! A `moe serve` subprocess on a fixture model with a tokenizer and chat template, and plain
//! HTTP to it through ureq.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::edit::temp_dir;
use crate::common::fixtures::Fixture;

pub const KEY: &str = "test-key";

/// The OLMoE fixture with a word-level tokenizer over its whole vocabulary (`<unk>`, then
/// `w1` … `w351`) and a Qwen-like chat template. Decoding joins words with spaces.
pub fn chat_model() -> PathBuf {
    let fx = Fixture::open("hf-tiny", "olmoe");
    let d = temp_dir("serve-model");
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fx.model_dir.join(f), d.join(f)).unwrap();
    }
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), json!(0));
    for i in 1..352 {
        vocab.insert(format!("w{i}"), json!(i));
    }
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    std::fs::write(d.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat/qwen_like.jinja");
    std::fs::copy(template, d.join("chat_template.jinja")).unwrap();
    d
}

/// A running `moe serve --port 0`, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    stderr: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

impl Server {
    pub fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_moe"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (found, address) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let _ = found.send(line[at + "listening on ".len()..].to_string());
                }
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let base = address
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|_| panic!("no address printed:\n{}", stderr.lock().unwrap()));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Server {
            child,
            base,
            stderr,
            agent,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            request = request.header("Authorization", format!("Bearer {k}"));
        }
        let mut r = request.call().unwrap();
        (r.status().as_u16(), r.body_mut().read_json().unwrap())
    }

    /// POSTs `body` as it is (with the test key) and returns the status and the JSON answer.
    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {KEY}"))
            .content_type("application/json")
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} `{text}`: {e}"));
        (status, v)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string())
    }

    /// A request that must succeed.
    pub fn ok(&self, path: &str, body: &Value) -> Value {
        let (status, v) = self.post(path, body);
        assert_eq!(status, 200, "{v}");
        v
    }

    /// The `data:` payloads of a streamed request, `[DONE]` included.
    pub fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let mut body = body.clone();
        body["stream"] = json!(true);
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {KEY}"))
            .send_json(&body)
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let mut text = String::new();
        r.into_body()
            .into_reader()
            .read_to_string(&mut text)
            .unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }

    /// Starts a streamed request over a raw connection and returns it once two chunks have
    /// arrived; dropping it is a client leaving mid-stream.
    pub fn open_stream(&self, path: &str, body: &Value) -> TcpStream {
        let mut body = body.clone();
        body["stream"] = json!(true);
        let payload = body.to_string();
        let address = self.base.trim_start_matches("http://");
        let mut tcp = TcpStream::connect(address).unwrap();
        write!(
            tcp,
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        )
        .unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while seen.matches("data: ").count() < 2 {
            let n = tcp.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        tcp
    }

    /// Polls /health until `done` holds of it.
    pub fn wait_health(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (_, v) = self.get("/health", None);
            if done(&v) {
                return v;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{what}: {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        // The shell's builtin kill: a minimal Debian image has no /bin/kill (procps).
        let kill = format!("kill -TERM {}", self.child.id());
        assert!(
            Command::new("sh")
                .args(["-c", &kill])
                .status()
                .unwrap()
                .success()
        );
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status, self.stderr())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
