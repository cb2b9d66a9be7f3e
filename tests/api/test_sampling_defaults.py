"""Sampling values a request leaves out come from the profile, then the model's generation_config.json, then the
server's [generation] settings, then the API's defaults; explicit request values always win (real server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, register, signed_in

USER = [{"role": "user", "content": "Tell me a story."}]


def _variant(source: Path, target: Path, generation: dict[str, Any]) -> None:
    """A copy of a tiny model (weights linked) whose generation_config.json recommends `generation`."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "generation_config.json":
            (target / item.name).symlink_to(item)
    config = json.loads((source / "generation_config.json").read_text())
    config = {k: v for k, v in config.items() if k not in ("temperature", "top_p", "top_k", "do_sample")}
    (target / "generation_config.json").write_text(json.dumps({**config, **generation}))


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("sampling-models")
    _variant(tiny_models["tiny-llama"], models / "tiny-greedy", {"temperature": 0.0})
    _variant(tiny_models["tiny-llama"], models / "tiny-hot", {"temperature": 1.5, "top_p": 0.95})
    _variant(tiny_models["tiny-llama"], models / "tiny-plain", {})
    args = ["--model-dir", str(models), "--generation", "temperature=0", "--generation", "top_k=7"]
    with run_server(tmp_path_factory.mktemp("sampling-home"), args) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    register(server, "admin")
    return signed_in(server, "admin")


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def _texts(client: openai.OpenAI, model: str, runs: int = 3, **extra: Any) -> set[str]:
    out = set()
    for _ in range(runs):
        reply = client.chat.completions.create(model=model, messages=USER, max_tokens=16, **extra)  # type: ignore[arg-type]
        out.add(reply.choices[0].message.content or "")
    return out


def test_a_model_recommending_temperature_0_answers_greedily_when_the_request_says_nothing(
    client: openai.OpenAI,
) -> None:
    defaulted = _texts(client, "tiny-greedy")
    assert len(defaulted) == 1
    assert defaulted == _texts(client, "tiny-greedy", runs=1, temperature=0)


def test_an_explicit_request_temperature_beats_the_models_recommendation(client: openai.OpenAI) -> None:
    sampled = {t for seed in range(4) for t in _texts(client, "tiny-greedy", runs=1, temperature=1.0, seed=seed)}
    assert len(sampled) > 1


def test_the_models_recommendation_beats_the_servers_default(client: openai.OpenAI) -> None:
    # The server says temperature 0; tiny-hot's own 1.5 wins, so unseeded requests differ.
    assert len(_texts(client, "tiny-hot", runs=4)) > 1


def test_the_server_default_applies_when_the_model_says_nothing(client: openai.OpenAI) -> None:
    assert len(_texts(client, "tiny-plain")) == 1


def test_the_anthropic_and_responses_apis_take_the_same_defaults(server: ServerProcess, client: openai.OpenAI) -> None:
    greedy = next(iter(_texts(client, "tiny-greedy", runs=1, temperature=0)))
    claude = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
    texts = set()
    for _ in range(2):
        msg = claude.messages.create(model="tiny-greedy", max_tokens=16, messages=USER)  # type: ignore[arg-type]
        texts.add("".join(b.text for b in msg.content if b.type == "text"))
    assert texts == {greedy}
    resp = client.responses.create(model="tiny-greedy", input=USER, max_output_tokens=16)  # type: ignore[arg-type]
    assert resp.output_text == greedy


def test_a_profile_sits_between_the_model_and_the_request(
    server: ServerProcess, client: openai.OpenAI, admin: Api
) -> None:
    admin.ok("POST", "/api/profiles", 201, json={"name": "calm", "model": "tiny-hot", "temperature": 0.0})
    assert len(_texts(client, "calm")) == 1  # the profile's 0 beats the model's 1.5
    assert len({t for s in range(4) for t in _texts(client, "calm", runs=1, temperature=1.0, seed=s)}) > 1
    card = httpx.get(f"{server.base_url}/v1/models/calm", timeout=30).json()
    assert card["sampling_defaults"]["temperature"] == {"value": 0.0, "source": "profile"}
    assert card["sampling_defaults"]["top_p"] == {"value": 0.95, "source": "model"}


def test_model_cards_show_each_default_and_where_it_comes_from(server: ServerProcess, admin: Api) -> None:
    cards = {c["id"]: c for c in httpx.get(f"{server.base_url}/v1/models", timeout=30).json()["data"]}
    hot = cards["tiny-hot"]["sampling_defaults"]
    assert hot["temperature"] == {"value": 1.5, "source": "model"}
    assert hot["top_k"] == {"value": 7, "source": "server"}
    assert hot["min_p"] == {"value": 0.0, "source": "api"}
    assert cards["tiny-plain"]["sampling_defaults"]["temperature"] == {"value": 0.0, "source": "server"}
    one = httpx.get(f"{server.base_url}/v1/models/tiny-hot", timeout=30).json()
    assert one["sampling_defaults"] == cards["tiny-hot"]["sampling_defaults"]
    assert one["context_length"] == one["max_model_len"] and one["context_length"] > 0
    local = {m["id"]: m for m in admin.ok("GET", "/admin/models/local")}
    assert local["tiny-hot"]["sampling_defaults"] == hot


def test_model_cards_say_whether_the_model_is_loaded(server: ServerProcess, client: openai.OpenAI, admin: Api) -> None:
    admin.post("/admin/models/tiny-plain/unload")
    assert httpx.get(f"{server.base_url}/v1/models/tiny-plain", timeout=30).json()["loaded"] is False
    _texts(client, "tiny-plain", runs=1)
    assert httpx.get(f"{server.base_url}/v1/models/tiny-plain", timeout=30).json()["loaded"] is True
