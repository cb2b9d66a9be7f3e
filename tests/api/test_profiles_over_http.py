"""Profiles on a real server: CRUD under /api/profiles, and a profile's name used as the model of chat
completions, completions, Anthropic messages and Responses, with its defaults applied and explicit values winning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, approved_user, assert_problem, register, signed_in

SYSTEM = "You are a terse assistant who answers in one word."
USER = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("profiles"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Api:
    register(server, "admin")
    return signed_in(server, "admin")


@pytest.fixture(scope="module")
def brief(admin: Api) -> dict[str, Any]:
    """tiny-llama, greedy, 3 tokens, with a system prompt."""
    body = {"name": "brief", "model": "tiny-llama", "temperature": 0.0, "max_tokens": 3, "system_prompt": SYSTEM}
    profile: dict[str, Any] = admin.ok("POST", "/api/profiles", 201, json=body)
    return profile


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_profile_crud_with_404_409_and_duplicates(admin: Api, brief: dict[str, Any]) -> None:
    assert admin.ok("GET", f"/api/profiles/{brief['id']}") == brief
    assert "brief" in [p["name"] for p in admin.ok("GET", "/api/profiles")]
    assert_problem(admin.post("/api/profiles", json={"name": "brief", "model": "tiny-qwen3"}), 409, "profile_exists")
    assert_problem(admin.post("/api/profiles", json={"name": "tiny-qwen3", "model": "x"}), 409, "name_is_a_model")
    assert_problem(admin.post("/api/profiles", json={"name": "bad name", "model": "x"}), 400)
    too_long = {"name": "p", "model": "tiny-llama", "max_tokens": 64, "context_length": 64}
    assert_problem(admin.post("/api/profiles", json=too_long), 400, "max_tokens_exceeds_context")
    copy = admin.ok("POST", f"/api/profiles/{brief['id']}/duplicate", 201)
    assert copy["name"] == "brief-copy" and copy["system_prompt"] == SYSTEM and copy["id"] != brief["id"]
    named = admin.ok("POST", f"/api/profiles/{brief['id']}/duplicate", 201, json={"name": "brief-2"})
    changed = admin.ok("PATCH", f"/api/profiles/{named['id']}", json={"temperature": None, "top_p": 0.5})
    assert (changed["temperature"], changed["top_p"], changed["max_tokens"]) == (None, 0.5, 3)
    assert_problem(admin.patch(f"/api/profiles/{named['id']}", json={"name": "brief"}), 409)
    assert_problem(admin.patch(f"/api/profiles/{named['id']}", json={"model": None}), 400)
    for method in ("GET", "PATCH", "DELETE"):
        assert_problem(admin.http.request(method, "/api/profiles/9999", json={}), 404, "profile_not_found")
    assert_problem(admin.post("/api/profiles/9999/duplicate"), 404)
    for profile in (copy, named):
        assert admin.delete(f"/api/profiles/{profile['id']}").status_code == 204
    assert_problem(admin.get(f"/api/profiles/{copy['id']}"), 404)


def test_a_profile_must_name_a_model_here_or_a_routed_one(admin: Api, brief: dict[str, Any]) -> None:
    refused = assert_problem(admin.post("/api/profiles", json={"name": "typo", "model": "tiny-lama"}), 400)
    assert refused["code"] == "unknown_model" and "'tiny-lama'" in refused["detail"]
    assert_problem(admin.patch(f"/api/profiles/{brief['id']}", json={"model": "nowhere"}), 400, "unknown_model")
    assert admin.ok("GET", f"/api/profiles/{brief['id']}")["model"] == "tiny-llama"  # unchanged
    backend = admin.ok("POST", "/api/routing/backends", 201, json={"name": "far", "kind": "openai",
                                                                     "base_url": "http://127.0.0.1:9/v1"})  # fmt: skip
    rule = admin.ok(
        "POST",
        "/api/routing/rules",
        201,
        json={"pattern": "far-*", "match_type": "glob", "backend_ids": [backend["id"]]},
    )
    routed = admin.ok("POST", "/api/profiles", 201, json={"name": "remote", "model": "far-model"})
    assert routed["model"] == "far-model"  # a rule sends it elsewhere: accepted
    admin.delete(f"/api/profiles/{routed['id']}")
    admin.delete(f"/api/routing/rules/{rule['id']}")
    admin.delete(f"/api/routing/backends/{backend['id']}")


def test_members_read_profiles_but_only_admins_change_them(admin: Api, brief: dict[str, Any]) -> None:
    member = approved_user(admin, "member")
    assert member.ok("GET", f"/api/profiles/{brief['id']}")["name"] == "brief"
    assert_problem(member.patch(f"/api/profiles/{brief['id']}", json={"top_p": 0.1}), 403)


def test_a_profile_is_a_model_in_chat_with_its_defaults_and_explicit_values_win(
    client: openai.OpenAI, brief: dict[str, Any]
) -> None:
    out = client.chat.completions.create(model="brief", messages=USER)  # type: ignore[arg-type]
    assert out.model == "brief" and out.usage is not None and out.usage.completion_tokens == 3
    # The same as asking the model itself with the profile's system prompt, greedily: the defaults were applied.
    system = [{"role": "system", "content": SYSTEM}, *USER]
    same = client.chat.completions.create(model="tiny-llama", messages=system, temperature=0, max_tokens=3)  # type: ignore[arg-type]
    assert out.choices[0].message.content == same.choices[0].message.content
    assert out.usage.prompt_tokens == same.usage.prompt_tokens  # type: ignore[union-attr]
    longer = client.chat.completions.create(
        model="brief",
        messages=USER,  # type: ignore[arg-type]
        max_tokens=5,
        extra_body={"ignore_eos": True},
    )
    assert longer.usage is not None and longer.usage.completion_tokens == 5
    own_system = [{"role": "system", "content": "Hi."}, *USER]
    mine = client.chat.completions.create(model="brief", messages=own_system)  # type: ignore[arg-type]
    plain = client.chat.completions.create(model="tiny-llama", messages=own_system, max_tokens=1)  # type: ignore[arg-type]
    assert mine.usage.prompt_tokens == plain.usage.prompt_tokens  # type: ignore[union-attr]


def test_a_profile_streams_and_completes_text_too(client: openai.OpenAI, brief: dict[str, Any]) -> None:
    stream = client.chat.completions.create(
        model="brief",
        messages=USER,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.model for c in chunks} == {"brief"} and chunks[-1].usage.completion_tokens == 3  # type: ignore[union-attr]
    text = client.completions.create(model="brief", prompt="Once upon a time")
    assert text.model == "brief" and text.usage is not None and text.usage.completion_tokens == 3


def test_a_profile_is_a_model_in_anthropic_messages(server: ServerProcess, brief: dict[str, Any]) -> None:
    client = anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0)
    out = client.messages.create(model="brief", max_tokens=4, messages=USER)  # type: ignore[arg-type]
    assert out.model == "brief" and out.usage.output_tokens <= 4
    counted = client.messages.count_tokens(model="brief", messages=USER)  # type: ignore[arg-type]
    direct = client.messages.count_tokens(model="tiny-llama", system=SYSTEM, messages=USER)  # type: ignore[arg-type]
    assert counted.input_tokens == direct.input_tokens == out.usage.input_tokens + out.usage.cache_read_input_tokens
    assert client.messages.count_tokens(model="tiny-llama", messages=USER).input_tokens != direct.input_tokens  # type: ignore[arg-type]


def test_a_profile_is_a_model_in_responses(client: openai.OpenAI, brief: dict[str, Any]) -> None:
    out = client.responses.create(model="brief", input="Name a colour.", store=False)
    assert out.model == "brief" and out.usage is not None and out.usage.output_tokens == 3
    assert out.status == "incomplete"  # max_output_tokens came from the profile
    # Greedy (the profile's temperature 0), so the same 5 tokens every time.
    explicit = client.responses.create(model="brief", input="Name a colour.", max_output_tokens=5, store=False)
    assert explicit.usage is not None and explicit.usage.output_tokens == 5


def test_thinking_and_the_context_cap_reach_the_model(admin: Api, client: openai.OpenAI) -> None:
    admin.ok("POST", "/api/profiles", 201, json={"name": "no-think", "model": "tiny-qwen3", "thinking": False})
    admin.ok("POST", "/api/profiles", 201, json={"name": "small", "model": "tiny-llama", "context_length": 20})
    off = client.chat.completions.create(model="no-think", messages=USER, max_tokens=1)  # type: ignore[arg-type]
    explicit = client.chat.completions.create(
        model="tiny-qwen3",
        messages=USER,  # type: ignore[arg-type]
        max_tokens=1,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    default = client.chat.completions.create(model="tiny-qwen3", messages=USER, max_tokens=1)  # type: ignore[arg-type]
    assert off.usage.prompt_tokens == explicit.usage.prompt_tokens != default.usage.prompt_tokens  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError, match="maximum context length is 20"):
        client.chat.completions.create(model="small", messages=USER)  # type: ignore[arg-type]


def test_profiles_are_listed_and_retrieved_as_models(server: ServerProcess, client: openai.OpenAI, brief: Any) -> None:
    models = {m.id: m for m in client.models.list()}
    assert "tiny-llama" in models and models["brief"].owned_by == "profile"
    assert client.models.retrieve("brief").id == "brief"
    anthropic_list = httpx.get(f"{server.base_url}/anthropic/v1/models").json()
    assert "brief" in [m["id"] for m in anthropic_list["data"]]


def test_a_deleted_profile_is_no_model_any_more(admin: Api, client: openai.OpenAI) -> None:
    profile = admin.ok("POST", "/api/profiles", 201, json={"name": "gone", "model": "tiny-llama"})
    assert client.chat.completions.create(model="gone", messages=USER, max_tokens=1).model == "gone"  # type: ignore[arg-type]
    admin.delete(f"/api/profiles/{profile['id']}")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gone", messages=USER, max_tokens=1)  # type: ignore[arg-type]
