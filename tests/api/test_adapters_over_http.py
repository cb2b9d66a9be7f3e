"""LoRA adapters through a real server: listed as BASE@ADAPTER, greedy output equal to mlx-lm's own
load(path, adapter_path=...), the base unchanged while adapters run next to it in one batch, PEFT's format equal to
mlx-lm's, an adapter added by path, the base's unload taking its adapters along, and errors in each API's shape."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import mlx.core as mx
import ollama
import openai
import pytest
from mlx_lm import load, stream_generate

from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_adapters import write_tiny_adapter
from tests.api.accounts import register, signed_in

PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "Rivers flow into"]
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def adapter_dir(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adapters")
    write_tiny_adapter(tiny_models["tiny-llama"], out, "lora", seed=1)
    write_tiny_adapter(tiny_models["tiny-llama"], out, "other", seed=2, num_layers=1)
    # Tied to tiny-llama by its config, but its A matrices take twice tiny-llama's input features.
    wide = write_tiny_adapter(tiny_models["tiny-llama"], out, "wide", seed=4)["mlx"]
    weights = mx.load(str(wide / "adapters.safetensors"))
    assert isinstance(weights, dict)
    wider = {k: mx.concatenate([v, v]) if k.endswith("lora_a") else v for k, v in weights.items()}
    mx.save_safetensors(str(wide / "adapters.safetensors"), wider)
    return out


@pytest.fixture(scope="module")
def srv(tiny_models_dir: Path, adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--model-dir", str(tiny_models_dir), "--model-dir", str(adapter_dir)]
    with run_server(tmp_path_factory.mktemp("adapters-home"), args) as server:
        yield server


@pytest.fixture(scope="module")
def expected(tiny_models: dict[str, Path], adapter_dir: Path) -> dict[str, list[str]]:
    """mlx-lm's own greedy continuations: the base alone, and the base loaded with each adapter."""
    base = str(tiny_models["tiny-llama"])
    models = {
        "tiny-llama": load(base),
        "tiny-llama@lora-mlx": load(base, adapter_path=str(adapter_dir / "lora-mlx")),
        "tiny-llama@other-mlx": load(base, adapter_path=str(adapter_dir / "other-mlx")),
    }
    return {name: [continuation(m[0], m[1], p) for p in PROMPTS] for name, m in models.items()}


def continuation(model: Any, tokenizer: Any, prompt: str) -> str:
    """mlx-lm's greedy tokens, as text that follows the prompt (as a completion's text is rendered)."""
    ids = tokenizer.encode(prompt)
    out = [r.token for r in stream_generate(model, tokenizer, ids, max_tokens=MAX_TOKENS)]
    return str(tokenizer.decode(ids + out))[len(tokenizer.decode(ids)) :]


def oai(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def complete(server: ServerProcess, model: str, prompt: str) -> str:
    out = oai(server).completions.create(model=model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
    return out.choices[0].text


def loaded(server: ServerProcess) -> dict[str, Any]:
    r = httpx.get(f"{server.base_url}/admin/models", timeout=10)
    assert r.status_code == 200, r.text
    return {m["id"]: m for m in r.json()["data"]}


def test_adapters_are_listed_as_models_named_base_at_adapter(srv: ServerProcess) -> None:
    ids = {m.id for m in oai(srv).models.list()}
    assert {"tiny-llama@lora-mlx", "tiny-llama@lora-peft", "tiny-llama@other-mlx", "tiny-llama"} <= ids
    card = httpx.get(f"{srv.base_url}/v1/models/tiny-llama@lora-peft", timeout=10)
    assert card.status_code == 200 and card.json()["id"] == "tiny-llama@lora-peft"


def test_greedy_output_through_an_adapter_equals_mlx_lm_with_adapter_path(
    srv: ServerProcess, expected: dict[str, list[str]]
) -> None:
    got = [complete(srv, "tiny-llama@lora-mlx", p) for p in PROMPTS]
    assert got == expected["tiny-llama@lora-mlx"]
    assert got != expected["tiny-llama"]  # the adapter is not a no-op
    # PEFT's files hold the same weights transposed, with lora_alpha / r as the scale.
    assert [complete(srv, "tiny-llama@lora-peft", p) for p in PROMPTS] == got


def test_base_and_two_adapters_in_one_batch_each_answer_as_alone(
    srv: ServerProcess, expected: dict[str, list[str]]
) -> None:
    names = ["tiny-llama", "tiny-llama@lora-mlx", "tiny-llama@other-mlx"]
    jobs = [(name, i) for _ in range(2) for name in names for i in range(len(PROMPTS))]
    before = loaded(srv)["tiny-llama"]["requests_done"] if "tiny-llama" in loaded(srv) else 0
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: complete(srv, job[0], PROMPTS[job[1]]), jobs))
    assert answers == [expected[name][i] for name, i in jobs]
    model = loaded(srv)["tiny-llama"]
    # One pooled base served all three: the adapters are on it, each costing only its own weights.
    assert model["requests_done"] - before == len(jobs)
    adapters = {a["id"]: a for a in model["adapters"]}
    assert set(adapters) >= {"tiny-llama@lora-mlx", "tiny-llama@other-mlx"}
    assert adapters["tiny-llama@lora-mlx"]["memory_bytes"] == 2 * adapters["tiny-llama@other-mlx"]["memory_bytes"]
    assert sum(a["memory_bytes"] for a in adapters.values()) < model["memory_bytes"] / 4
    # The base's own output, again alone, after all that.
    assert [complete(srv, "tiny-llama", p) for p in PROMPTS] == expected["tiny-llama"]


def test_an_adapter_added_by_path_is_served_and_costs_its_own_weights(
    srv: ServerProcess, tiny_models: dict[str, Path], tmp_path: Path, expected: dict[str, list[str]]
) -> None:
    # The same weights as lora-mlx, in a folder the server does not scan.
    folder = write_tiny_adapter(tiny_models["tiny-llama"], tmp_path, "posted", seed=1)["peft"]
    httpx.post(f"{srv.base_url}/admin/models/tiny-llama/load", timeout=60).raise_for_status()
    active = lambda: httpx.get(f"{srv.base_url}/admin/memory", timeout=10).json()["mlx_active_bytes"]  # noqa: E731
    start = active()
    r = httpx.post(
        f"{srv.base_url}/admin/models/tiny-llama/adapters", json={"path": str(folder), "name": "mine"}, timeout=60
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["id"], body["format"], body["modules"]) == ("tiny-llama@mine", "peft", 14)
    grown = active() - start
    assert body["memory_bytes"] <= grown <= body["memory_bytes"] + 64 * 1024  # its arrays, no copy of the base
    assert [complete(srv, "tiny-llama@mine", p) for p in PROMPTS] == expected["tiny-llama@lora-mlx"]
    assert "tiny-llama@mine" in {m.id for m in oai(srv).models.list()}
    card = httpx.get(f"{srv.base_url}/v1/models/tiny-llama@mine", timeout=10).json()
    assert card["loaded"] is True


def test_unloading_the_base_unloads_its_adapters_and_a_request_brings_them_back(
    srv: ServerProcess, expected: dict[str, list[str]]
) -> None:
    assert complete(srv, "tiny-llama@lora-mlx", PROMPTS[0]) == expected["tiny-llama@lora-mlx"][0]
    assert httpx.post(f"{srv.base_url}/admin/models/tiny-llama/unload", timeout=30).status_code == 200
    assert "tiny-llama" not in loaded(srv)
    assert httpx.get(f"{srv.base_url}/v1/models/tiny-llama@lora-mlx", timeout=10).json()["loaded"] is False
    assert complete(srv, "tiny-llama@other-mlx", PROMPTS[1]) == expected["tiny-llama@other-mlx"][1]
    assert [a["id"] for a in loaded(srv)["tiny-llama"]["adapters"]] == ["tiny-llama@other-mlx"]
    # One adapter can be taken off alone; the base stays.
    assert httpx.post(f"{srv.base_url}/admin/models/tiny-llama@other-mlx/unload", timeout=30).status_code == 200
    assert loaded(srv)["tiny-llama"]["adapters"] == []


def test_unknown_adapter_and_wrong_base_are_errors_in_each_apis_shape(
    srv: ServerProcess, adapter_dir: Path, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai(srv).chat.completions.create(model="tiny-llama@nope", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    claude = anthropic.Anthropic(base_url=srv.base_url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as not_found:
        claude.messages.create(model="tiny-llama@nope", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert not_found.value.body["type"] == "error" and "tiny-llama@nope" in str(not_found.value.body)  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        oai(srv).responses.create(model="tiny-llama@nope", input="hi")
    # An adapter whose weights do not fit its base: a 400 naming the model, in each API's shape.
    with pytest.raises(openai.BadRequestError) as bad:
        oai(srv).chat.completions.create(model="tiny-llama@wide-mlx", messages=[{"role": "user", "content": "hi"}])
    assert bad.value.body["param"] == "model" and "does not fit" in bad.value.body["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad_claude:
        claude.messages.create(model="tiny-llama@wide-mlx", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert bad_claude.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        oai(srv).responses.create(model="tiny-llama@wide-mlx", input="hi")
    # An adapter trained for tiny-qwen3 (its config says so) cannot go on tiny-llama.
    qwen = write_tiny_adapter(tiny_models["tiny-qwen3"], tmp_path, "q", seed=3)["mlx"]
    r = httpx.post(f"{srv.base_url}/admin/models/tiny-llama/adapters", json={"path": str(qwen)}, timeout=60)
    assert r.status_code == 400 and "trained for 'tiny-qwen3'" in r.json()["error"]["message"], r.text
    r = httpx.post(f"{srv.base_url}/admin/models/tiny-llama/adapters", json={"path": str(tmp_path / "none")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "path"
    # A name already serving another adapter folder.
    again = write_tiny_adapter(tiny_models["tiny-llama"], tmp_path, "again", seed=5)["mlx"]
    r = httpx.post(f"{srv.base_url}/admin/models/tiny-llama/adapters", json={"path": str(again), "name": "lora-mlx"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "name", r.text


def test_profiles_and_routing_rules_can_name_an_adapter(srv: ServerProcess, expected: dict[str, list[str]]) -> None:
    register(srv, "admin")
    admin = signed_in(srv, "admin")
    admin.ok("POST", "/api/profiles", 201, json={"name": "tuned", "model": "tiny-llama@lora-mlx", "temperature": 0})
    out = oai(srv).completions.create(model="tuned", prompt=PROMPTS[0], max_tokens=MAX_TOKENS)
    assert out.model == "tuned" and out.choices[0].text == expected["tiny-llama@lora-mlx"][0]
    here = admin.ok("POST", "/api/routing/backends", 201, json={"name": "here", "kind": "local", "base_url": None})
    rule = {"pattern": "my-tune", "backend_ids": [here["id"]], "remote_model": "tiny-llama@other-mlx"}
    admin.ok("POST", "/api/routing/rules", 201, json=rule)
    assert complete(srv, "my-tune", PROMPTS[1]) == expected["tiny-llama@other-mlx"][1]


def test_the_ollama_api_serves_an_adapter_by_its_name(srv: ServerProcess, expected: dict[str, list[str]]) -> None:
    client = ollama.Client(host=srv.base_url, timeout=120)
    options = {"temperature": 0, "num_predict": MAX_TOKENS}
    out = client.generate(model="tiny-llama@lora-mlx", prompt=PROMPTS[0], raw=True, options=options)
    assert out.response == expected["tiny-llama@lora-mlx"][0]
    assert "tiny-llama@lora-peft" in {m.model for m in client.list().models}
