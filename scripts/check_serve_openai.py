"""The checks of check_serve_openai.sh, through the official openai client.
Usage: check_serve_openai.py BASE_URL API_KEY"""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import urllib.error
import urllib.request

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
failures = []


def http(path, body=None, auth=True):
    """(status, JSON) of a plain HTTP request, for what the client cannot send."""
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{base}{path}", body, headers)
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


model = client.models.list().data[0].id
check(bool(model), f"models.list: {model}")

messages = [{"role": "user", "content": "w5 w17 w42"}]
plain = client.chat.completions.create(model=model, messages=messages, max_tokens=10, temperature=0)
text = plain.choices[0].message.content
streamed = "".join(
    c.choices[0].delta.content or ""
    for c in client.chat.completions.create(
        model=model, messages=messages, max_tokens=10, temperature=0, stream=True
    )
    if c.choices
)
check(text == streamed and plain.usage.total_tokens > 0,
      f"chat plain == streamed: {text!r} (usage {plain.usage.total_tokens})")

comp = client.completions.create(model=model, prompt="w5 w6 w7", max_tokens=8, temperature=0)
comp_streamed = "".join(
    c.choices[0].text
    for c in client.completions.create(
        model=model, prompt="w5 w6 w7", max_tokens=8, temperature=0, stream=True
    )
)
check(comp.choices[0].text == comp_streamed and comp.usage.prompt_tokens == 3,
      f"completions plain == streamed: {comp.choices[0].text!r}")


def complete(prompt):
    r = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0)
    return r.choices[0].text


prompts = [f"w{3 + i * 40} w{7 + i}" for i in range(8)]
sequential = [complete(p) for p in prompts]
for n in (4, 8):
    with ThreadPoolExecutor(n) as pool:
        concurrent = list(pool.map(complete, prompts[:n]))
    check(concurrent == sequential[:n], f"{n} concurrent greedy requests == sequential")


def expect_error(what, status, call):
    try:
        call()
    except openai.APIStatusError as e:
        body = e.response.json()
        error = body.get("error", {})
        good = e.status_code == status and all(k in error for k in ("message", "type", "param", "code"))
        check(good, f"{what}: {e.status_code} {json.dumps(error)}")
    else:
        check(False, f"{what}: no error")
    check(http("/health")[0] == 200, f"  still serving after: {what}")


def raw(body):
    return lambda: client.post("/completions", body=body, cast_to=object)


expect_error("missing messages", 400,
             lambda: client.post("/chat/completions", body={"model": model}, cast_to=object))
expect_error("max_tokens of the wrong type", 400, raw({"model": model, "prompt": "w5", "max_tokens": "ten"}))
expect_error("prompt beyond the context", 400,
             lambda: client.completions.create(model=model, prompt=" ".join(["w5"] * 600), max_tokens=4))
expect_error("max_tokens = 0", 400, lambda: client.completions.create(model=model, prompt="w5", max_tokens=0))
expect_error("max_tokens < 0", 400,
             lambda: client.chat.completions.create(model=model, messages=messages, max_tokens=-1))
expect_error("unknown model", 404, lambda: client.completions.create(model="gpt-4o", prompt="w5", max_tokens=2))
wrong_key = openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0)
expect_error("wrong API key", 401, lambda: wrong_key.models.list())
status, v = http("/v1/completions", b"{not json")
check(status == 400 and "error" in v, f"malformed JSON: {status} {v}")


def health():
    return http("/health")[1]


before = health()["generated_tokens"]
stream = client.completions.create(model=model, prompt="w9 w8", max_tokens=300, temperature=0, stream=True)
for i, _ in enumerate(stream):
    if i == 2:
        break
stream.close()
deadline = time.time() + 60
while (h := health())["running"] or h["waiting"]:
    if time.time() > deadline:
        break
    time.sleep(0.02)
generated = health()["generated_tokens"] - before
check(h["running"] == 0 and generated < 300, f"a client left mid-stream: its slot freed after {generated} tokens")
after = client.completions.create(model=model, prompt="w5", max_tokens=3, temperature=0)
check(after.usage.completion_tokens == 3, "then a new request is served")

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
