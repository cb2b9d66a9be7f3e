"""The Ollama-compatible API through the official `ollama` client against a real server over the tiny models:
chat and generate (whole and streamed), options, format schemas, tools, thinking, keep_alive, ps, show, tags,
copy/delete of aliases, errors in Ollama's shape, and the root that clients probe."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest

from mlx_manager.testing.server import ServerProcess

MSG = [{"role": "user", "content": "Say hello."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PARIS = {"city": "Paris"}
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "ok": {"type": "boolean"}},
    "required": ["name", "ok"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def ol(server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=server.base_url, timeout=120)


def _loaded(server: ServerProcess) -> list[str]:
    return [m["name"] for m in httpx.get(f"{server.base_url}/api/ps", timeout=30).json()["models"]]


def test_chat_answers_with_real_counters_and_matches_the_openai_api(ol: ollama.Client, client: openai.OpenAI) -> None:
    started = time.perf_counter()
    out = ol.chat(model="tiny-llama", messages=MSG, options={"temperature": 0, "num_predict": 6})
    wall_ns = (time.perf_counter() - started) * 1e9
    assert out.done and out.done_reason == "length" and out.message.role == "assistant"
    assert out.eval_count == 6 and out.prompt_eval_count and out.prompt_eval_count > 3
    assert out.total_duration and 0 < out.total_duration <= wall_ns
    assert out.eval_duration and out.prompt_eval_duration and out.load_duration is not None
    assert out.eval_duration + out.prompt_eval_duration + out.load_duration <= out.total_duration
    same = client.chat.completions.create(model="tiny-llama", messages=MSG, temperature=0, max_tokens=6)  # type: ignore[arg-type]
    assert out.message.content == same.choices[0].message.content  # one engine path: greedy output agrees
    assert same.usage is not None and out.prompt_eval_count == same.usage.prompt_tokens


def test_chat_streams_ndjson_pieces_then_a_final_chunk(ol: ollama.Client) -> None:
    whole = ol.chat(model="tiny-llama", messages=MSG, options={"temperature": 0, "num_predict": 8})
    chunks = list(ol.chat(model="tiny-llama", messages=MSG, options={"temperature": 0, "num_predict": 8}, stream=True))
    assert len(chunks) >= 3 and all(not c.done for c in chunks[:-1]) and chunks[-1].done
    assert "".join(c.message.content or "" for c in chunks) == whole.message.content
    assert chunks[-1].eval_count == 8 and chunks[-1].done_reason == "length" and chunks[-1].eval_duration


def test_the_stream_is_ndjson_by_default(server: ServerProcess) -> None:
    body = {"model": "tiny-llama", "prompt": "Hi", "options": {"num_predict": 3}}
    with httpx.stream("POST", f"{server.base_url}/api/generate", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 3 and "total_duration" in lines[-1]


def test_plain_curl_d_as_in_ollamas_docs_is_read_as_json_but_not_from_a_browser(server: ServerProcess) -> None:
    # `curl URL -d '{...}'` labels its body application/x-www-form-urlencoded, as Ollama's README examples send it.
    curl_d = {"content-type": "application/x-www-form-urlencoded", "user-agent": "curl/7.88.1"}
    body = json.dumps({"model": "tiny-llama", "prompt": "Hi", "stream": False, "options": {"num_predict": 3}})
    resp = httpx.post(f"{server.base_url}/api/generate", headers=curl_d, content=body, timeout=60)
    assert resp.status_code == 200 and resp.json()["done"] and resp.json()["eval_count"] == 3, resp.text
    chat = json.dumps({"model": "tiny-llama", "messages": MSG, "stream": False, "options": {"num_predict": 2}})
    resp = httpx.post(f"{server.base_url}/api/chat", headers=curl_d, content=chat, timeout=60)
    assert resp.status_code == 200 and resp.json()["message"]["role"] == "assistant", resp.text
    # A page's form post is still no JSON (its own origin included), and other /api routes keep their 415.
    for extra in ({"origin": server.base_url}, {"referer": f"{server.base_url}/chat"}):
        resp = httpx.post(f"{server.base_url}/api/generate", headers={**curl_d, **extra}, content=body, timeout=60)
        assert resp.status_code == 415 and "application/json" in resp.json()["error"], resp.text
    login = httpx.post(f"{server.base_url}/api/auth/login", headers=curl_d, content=b'{"username": "a"}', timeout=60)
    assert login.status_code == 415, login.text


def test_generate_uses_the_chat_template_raw_skips_it_and_system_counts(ol: ollama.Client) -> None:
    opts = {"temperature": 0, "num_predict": 4}
    templated = ol.generate(model="tiny-llama", prompt="Hello", options=opts)
    raw = ol.generate(model="tiny-llama", prompt="Hello", raw=True, options=opts)
    system = ol.generate(model="tiny-llama", prompt="Hello", system="You are terse.", options=opts)
    assert templated.done and templated.eval_count == 4 and isinstance(templated.response, str)
    assert raw.prompt_eval_count and templated.prompt_eval_count and raw.prompt_eval_count < templated.prompt_eval_count
    assert system.prompt_eval_count and system.prompt_eval_count > templated.prompt_eval_count
    streamed = list(ol.generate(model="tiny-llama", prompt="Hello", options=opts, stream=True))
    assert "".join(c.response for c in streamed) == templated.response and streamed[-1].done


def test_a_simple_template_is_honoured_and_another_is_a_400(ol: ollama.Client) -> None:
    opts = {"temperature": 0, "num_predict": 3}
    template = "{{ if .System }}<sys>{{ .System }}</sys>{{ end }}Q: {{ .Prompt }}\nA: {{ .Response }}"
    with_template = ol.generate(model="tiny-llama", prompt="Hello", template=template, options=opts)
    raw = ol.generate(model="tiny-llama", prompt="Q: Hello\nA: ", raw=True, options=opts)
    assert with_template.response == raw.response and with_template.prompt_eval_count == raw.prompt_eval_count
    with pytest.raises(ollama.ResponseError) as err:
        ol.generate(model="tiny-llama", prompt="Hi", template="{{ range .Messages }}{{ .Content }}{{ end }}")
    assert err.value.status_code == 400 and "range .Messages" in err.value.error


def test_options_reach_the_sampler(ol: ollama.Client) -> None:
    seeded = {"temperature": 1.0, "seed": 7, "num_predict": 8, "top_k": 50, "min_p": 0.01, "repeat_penalty": 1.1}
    a = ol.generate(model="tiny-llama", prompt="Once", options=seeded)
    b = ol.generate(model="tiny-llama", prompt="Once", options=seeded)
    assert a.response == b.response  # the seed is honoured
    greedy = {"temperature": 0, "num_predict": 8}
    text = ol.generate(model="tiny-llama", prompt="Once", options=greedy).response
    stop_at = next(ch for ch in text[1:] if not ch.isspace())
    cut = ol.generate(model="tiny-llama", prompt="Once", options={**greedy, "stop": [stop_at]})
    assert cut.done_reason == "stop" and cut.response == text[: text.index(stop_at)]
    with pytest.raises(ollama.ResponseError) as err:
        ol.generate(model="tiny-llama", prompt="Once", options={"num_ctx": 8, "num_predict": 8})
    assert err.value.status_code == 400  # num_ctx caps prompt + reply


def test_format_json_schema_is_enforced_whole_and_streamed(ol: ollama.Client) -> None:
    # A bounded schema and greedy decoding: the reply ends, and must match it.
    opts = {"temperature": 0, "num_predict": 200}
    out = ol.chat(model="tiny-qwen3", messages=MSG, format=SCHEMA, think=False, options=opts)
    assert out.done_reason == "stop"
    jsonschema.validate(json.loads(out.message.content or ""), SCHEMA)
    parts = list(ol.chat(model="tiny-llama", messages=MSG, format=SCHEMA, stream=True, options=opts))
    assert parts[-1].done_reason == "stop"
    jsonschema.validate(json.loads("".join(p.message.content or "" for p in parts)), SCHEMA)
    # Any object may run on (a random model writes long strings): it starts as one, and parses when it ends.
    anything = ol.generate(model="tiny-llama", prompt="JSON please", format="json", options={"num_predict": 200})
    assert anything.response.lstrip().startswith("{")
    if anything.done_reason == "stop":
        assert isinstance(json.loads(anything.response), dict)
    else:
        assert anything.done_reason == "length"


def test_tools_are_offered_and_a_forced_call_comes_back_as_tool_calls(ol: ollama.Client) -> None:
    plain = ol.chat(model="tiny-qwen3", messages=MSG, think=False, options={"num_predict": 1})
    offered = ol.chat(model="tiny-qwen3", messages=MSG, tools=[WEATHER], think=False, options={"num_predict": 1})
    assert offered.prompt_eval_count and plain.prompt_eval_count
    assert offered.prompt_eval_count > plain.prompt_eval_count + 10
    forced: dict[str, Any] = {"tool_choice": "required", "num_predict": 64}
    for stream in (False, True):
        out = ol.chat(model="tiny-qwen3", messages=MSG, tools=[WEATHER], think=False, options=forced, stream=stream)
        chunks = list(out) if stream else [out]
        calls = [c for chunk in chunks for c in (chunk.message.tool_calls or [])]  # type: ignore[union-attr]
        assert len(calls) >= 1 and calls[0].function.name == "get_weather"
        assert isinstance(calls[0].function.arguments, dict) and isinstance(calls[0].function.arguments["city"], str)
    history = [
        *MSG,
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": PARIS}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "18 C and sunny"},
    ]
    fed = ol.chat(model="tiny-qwen3", messages=history, tools=[WEATHER], think=False, options={"num_predict": 2})
    assert fed.prompt_eval_count and fed.prompt_eval_count > offered.prompt_eval_count + 10


def test_think_returns_thinking_apart_and_false_keeps_it_out(ol: ollama.Client) -> None:
    # DeepSeek-R1's template opens <think>: until </think> the tiny model's output is reasoning.
    opts = {"temperature": 0, "num_predict": 8}
    thinking = ol.chat(model="tiny-deepseek-r1", messages=MSG, think=True, options=opts)
    assert thinking.message.thinking and not thinking.message.content
    streamed = list(ol.chat(model="tiny-deepseek-r1", messages=MSG, think=True, options=opts, stream=True))
    assert "".join(c.message.thinking or "" for c in streamed) == thinking.message.thinking
    generated = ol.generate(model="tiny-deepseek-r1", prompt="Say hello.", think=True, options=opts)
    assert generated.thinking == thinking.message.thinking and not generated.response
    assert not ol.chat(model="tiny-deepseek-r1", messages=MSG, think=False, options=opts).message.thinking
    # Qwen3's template closes an empty think block when thinking is off: think reaches the template.
    on = ol.chat(model="tiny-qwen3", messages=MSG, think=True, options={"num_predict": 1})
    off = ol.chat(model="tiny-qwen3", messages=MSG, think=False, options={"num_predict": 1})
    assert on.prompt_eval_count and off.prompt_eval_count and off.prompt_eval_count > on.prompt_eval_count


def test_keep_alive_zero_unloads_after_the_reply_and_a_duration_sets_the_expiry(
    ol: ollama.Client, server: ServerProcess
) -> None:
    ol.generate(model="tiny-mistral", prompt="Hi", options={"num_predict": 2}, keep_alive="10m")
    ps = {m.model: m for m in ol.ps().models}
    assert "tiny-mistral" in ps and ps["tiny-mistral"].size and ps["tiny-mistral"].details
    expires = ps["tiny-mistral"].expires_at
    assert expires is not None
    assert timedelta(minutes=9) < expires - datetime.now(UTC) <= timedelta(minutes=10, seconds=5)
    out = ol.generate(model="tiny-mistral", prompt="Hi", options={"num_predict": 2}, keep_alive=0)
    assert out.done and out.eval_count == 2
    deadline = time.monotonic() + 10
    while "tiny-mistral" in _loaded(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "tiny-mistral" not in _loaded(server)
    assert "Unloading tiny-mistral (keep_alive 0" in server.log()


def test_an_empty_request_loads_and_keep_alive_zero_unloads(ol: ollama.Client, server: ServerProcess) -> None:
    loaded = ol.generate(model="tiny-gemma3", keep_alive=-1)
    assert loaded.done and loaded.done_reason == "load" and "tiny-gemma3" in _loaded(server)
    far = {m.model: m.expires_at for m in ol.ps().models}["tiny-gemma3"]
    assert far is not None and far - datetime.now(UTC) > timedelta(days=3650)  # kept until unloaded (a pin)
    unloaded = ol.chat(model="tiny-gemma3", messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload" and "tiny-gemma3" not in _loaded(server)


def test_tags_show_and_version_describe_the_models(ol: ollama.Client, server: ServerProcess) -> None:
    tags = {m.model: m for m in ol.list().models}
    assert {"tiny-llama", "tiny-qwen3", "tiny-llama-4bit"} <= set(tags)
    llama = tags["tiny-llama"]
    assert llama.size and llama.digest and llama.details and llama.details.family and llama.details.parameter_size
    assert tags["tiny-llama-4bit"].details.quantization_level == "Q4"  # type: ignore[union-attr]
    shown = ol.show("tiny-qwen3")
    assert shown.template and "tools" in (shown.capabilities or []) and "completion" in (shown.capabilities or [])
    assert shown.details and shown.details.family and shown.modelinfo
    assert any(k.endswith(".context_length") for k in shown.modelinfo)
    assert ol.show("tiny-llama:latest").template == ol.show("tiny-llama").template  # clients add ":latest"
    version = httpx.get(f"{server.base_url}/api/version", timeout=10).json()
    assert version["version"]


def test_copy_makes_an_alias_that_chats_and_delete_removes_it(ol: ollama.Client) -> None:
    ol.copy("tiny-llama", "my-llama")
    assert "my-llama" in {m.model for m in ol.list().models}
    opts = {"temperature": 0, "num_predict": 4}
    assert (
        ol.chat(model="my-llama", messages=MSG, options=opts).message.content
        == ol.chat(model="tiny-llama", messages=MSG, options=opts).message.content
    )
    ol.delete("my-llama")
    assert "my-llama" not in {m.model for m in ol.list().models}
    with pytest.raises(ollama.ResponseError) as err:
        ol.delete("my-llama")
    assert err.value.status_code == 404


def test_errors_come_in_ollamas_shape(server: ServerProcess, ol: ollama.Client) -> None:
    base = server.base_url
    with pytest.raises(ollama.ResponseError) as err:
        ol.chat(model="no-such-model", messages=MSG)
    assert err.value.status_code == 404 and "no-such-model" in err.value.error
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("/api/chat", {"model": "tiny-llama", "messages": [{"role": "wizard", "content": "x"}]}, 400),
        ("/api/chat", {"model": "tiny-llama", "messages": MSG, "keep_alive": "soon"}, 400),
        ("/api/chat", {"model": "tiny-llama", "messages": MSG, "options": {"temperature": -1}}, 400),
        ("/api/generate", {"model": "tiny-llama", "prompt": "x", "suffix": "y"}, 400),
        ("/api/generate", {"prompt": "x"}, 400),
        ("/api/show", {"model": "nope"}, 404),
        ("/api/embed", {"model": "tiny-llama", "input": "x"}, 400),  # a chat model makes no embeddings
        ("/api/pull", {"model": "not a repo"}, 400),
    ]
    for path, body, status in cases:
        r = httpx.post(f"{base}{path}", json=body, timeout=30)
        assert r.status_code == status, (path, body, r.text)
        assert set(r.json()) == {"error"} and isinstance(r.json()["error"], str), r.text
    images = httpx.post(f"{base}/api/chat", json={"model": "tiny-llama", "messages": [{**MSG[0], "images": ["aGk="]}]})
    assert images.status_code == 400 and "does not accept images" in images.json()["error"]
    # The manager's own /api routes keep their problem details.
    assert httpx.get(f"{base}/api/nothing-here", timeout=10).headers["content-type"] == "application/problem+json"


def test_the_root_answers_ollamas_probe_and_browsers_get_the_ui(server: ServerProcess) -> None:
    assert httpx.head(server.base_url + "/", timeout=10).status_code == 200
    probe = httpx.get(server.base_url + "/", timeout=10)
    assert probe.status_code == 200 and probe.text == "Ollama is running"
    page = httpx.get(server.base_url + "/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_logprobs_come_back_per_token_whole_and_streamed(ol: ollama.Client, client: openai.OpenAI) -> None:
    opts = {"temperature": 0, "num_predict": 5}
    out = ol.chat(model="tiny-llama", messages=MSG, options=opts, logprobs=True, top_logprobs=2)
    assert out.logprobs is not None and len(out.logprobs) == 5
    assert all(len(lp.top_logprobs or []) == 2 and lp.logprob <= 0 for lp in out.logprobs)
    assert "".join(lp.token for lp in out.logprobs) == out.message.content
    same = client.chat.completions.create(
        model="tiny-llama",
        messages=MSG,
        temperature=0,
        max_tokens=5,
        logprobs=True,
        top_logprobs=2,  # type: ignore[arg-type]
    )
    reference = same.choices[0].logprobs.content  # type: ignore[union-attr]
    assert [round(lp.logprob, 4) for lp in out.logprobs] == [round(lp.logprob, 4) for lp in reference or []]
    streamed = [
        lp
        for c in ol.chat(model="tiny-llama", messages=MSG, options=opts, logprobs=True, stream=True)
        for lp in c.logprobs or []
    ]
    assert [lp.token for lp in streamed] == [lp.token for lp in out.logprobs]
    assert ol.chat(model="tiny-llama", messages=MSG, options=opts).logprobs is None
