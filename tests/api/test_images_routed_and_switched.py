"""A front server whose rules send model names to a second real server holding a vision model: images and
count_tokens reach that backend over either protocol, what it cannot serve (embeddings, rerank, text completions)
is a 400 naming it, base URLs work as users paste them, and a backend answering 404 is named and passed over. The
front also holds a text model, so a conversation with images can continue on it ("[image]" where an earlier turn
held one; an image in the newest turn stays a 400), in all three APIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_vlm import NAME as VLM
from mlx_manager.testing.tiny_vlm import image_tokens
from tests.api.accounts import Api, login, register
from tests.api.test_vision import QUESTION, png

TEXT_MODEL = "tiny-llama"
PICTURE = png(112, 112, 21)
SOURCE = {"type": "base64", "media_type": "image/png", "data": PICTURE}


@pytest.fixture(scope="module")
def front(tiny_models_dir: Path, tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--model-dir", str(tiny_models_dir), "--model-dir", str(tiny_vlm.parent)]
    with run_server(tmp_path_factory.mktemp("front"), args) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(front: ServerProcess) -> Api:
    register(front, "root")
    return Api(front, login(front, "root"))


def _backend(admin: Api, name: str, kind: str, base_url: str | None) -> int:
    body = {"name": name, "kind": kind, "base_url": base_url, "timeout_seconds": 60}
    return int(admin.ok("POST", "/api/routing/backends", 201, json=body)["id"])


def _rule(admin: Api, pattern: str, backends: list[int], remote_model: str) -> None:
    body = {"pattern": pattern, "backend_ids": backends, "remote_model": remote_model}
    admin.ok("POST", "/api/routing/rules", 201, json=body)


@pytest.fixture(scope="module")
def routed(admin: Api, vision_server: ServerProcess) -> ServerProcess:
    """seeing-o and seeing-a: the vision server's model behind an OpenAI and an Anthropic backend, whose base URLs
    are pasted as the SDKs take them (the Anthropic one with a /v1 too many)."""
    _rule(admin, "seeing-o", [_backend(admin, "vlm-openai", "openai", f"{vision_server.base_url}/v1/")], VLM)
    _rule(admin, "seeing-a", [_backend(admin, "vlm-anthropic", "anthropic", f"{vision_server.base_url}/v1")], VLM)
    return vision_server


def _openai(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0, timeout=120)


def _claude(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=120)


def _prompt_tokens(message: anthropic.types.Message) -> int:
    # Anthropic counts prompt tokens read from the (prefix) cache apart.
    return message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)


def _image_chat(text: str = QUESTION) -> list[Any]:
    url = {"url": f"data:image/png;base64,{PICTURE}"}
    return [{"role": "user", "content": [{"type": "image_url", "image_url": url}, {"type": "text", "text": text}]}]


def _image_message(text: str = QUESTION) -> list[Any]:
    return [{"role": "user", "content": [{"type": "image", "source": SOURCE}, {"type": "text", "text": text}]}]


# --- base URLs as pasted ------------------------------------------------------------------------------------


def test_pasted_base_urls_are_stored_in_the_form_the_clients_use(admin: Api, routed: ServerProcess) -> None:
    bare = _backend(admin, "vlm-bare", "openai", routed.base_url)
    stored = {b["name"]: b["base_url"] for b in admin.ok("GET", "/api/routing/backends")}
    assert stored["vlm-openai"] == stored["vlm-bare"] == f"{routed.base_url}/v1"
    assert stored["vlm-anthropic"] == routed.base_url
    changed = admin.ok("PATCH", f"/api/routing/backends/{bare}", json={"base_url": f"{routed.base_url}/v1"})
    assert changed["base_url"] == f"{routed.base_url}/v1"  # no /v1/v1


# --- images and count_tokens for a model only a rule knows -----------------------------------------------------


def test_images_reach_the_backend_through_every_api_and_either_protocol(
    front: ServerProcess, routed: ServerProcess
) -> None:
    direct = _openai(routed).chat.completions.create(model=VLM, messages=_image_chat(), max_tokens=6, temperature=0)
    text_only = _openai(routed).chat.completions.create(
        model=VLM, messages=[{"role": "user", "content": QUESTION}], max_tokens=1
    )
    expected = direct.usage.prompt_tokens  # type: ignore[union-attr]
    assert expected == text_only.usage.prompt_tokens + 2 + image_tokens(112, 112)  # type: ignore[union-attr]
    client, claude = _openai(front), _claude(front)
    for model in ("seeing-o", "seeing-a"):
        out = client.chat.completions.create(model=model, messages=_image_chat(), max_tokens=6, temperature=0)
        assert out.usage and out.usage.prompt_tokens == expected, model
        assert out.choices[0].message.content == direct.choices[0].message.content, model
        reply = claude.messages.create(model=model, max_tokens=4, messages=_image_message())
        assert _prompt_tokens(reply) == expected, model
    parts: Any = [
        {"type": "input_image", "image_url": f"data:image/png;base64,{PICTURE}"},
        {"type": "input_text", "text": QUESTION},
    ]
    response = client.responses.create(
        model="seeing-o", input=[{"role": "user", "content": parts}], max_output_tokens=4
    )
    assert response.usage and response.usage.input_tokens == expected


def test_count_tokens_is_the_anthropic_backends_own_count(front: ServerProcess, routed: ServerProcess) -> None:
    direct = _claude(routed).messages.count_tokens(model=VLM, messages=_image_message()).input_tokens
    claude = _claude(front)
    assert claude.messages.count_tokens(model="seeing-a", messages=_image_message()).input_tokens == direct
    text: Any = [{"role": "user", "content": QUESTION}]
    assert claude.messages.count_tokens(model="seeing-a", messages=text).input_tokens < direct


def test_count_tokens_for_an_openai_backend_is_a_400_saying_why(front: ServerProcess, routed: ServerProcess) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        _claude(front).messages.count_tokens(model="seeing-o", messages=_image_message())
    message = err.value.body["error"]["message"]  # type: ignore[index]
    assert "vlm-openai" in message and "OpenAI-compatible" in message and "not found" not in message


# --- what a routed model cannot do: a 400 naming its backends ------------------------------------------------


def test_embeddings_rerank_and_text_completions_of_a_routed_model_are_a_400_naming_the_backend(
    front: ServerProcess, routed: ServerProcess
) -> None:
    client = _openai(front)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="seeing-o", input="hi")
    body: Any = err.value.body
    assert "'seeing-o' runs on vlm-openai" in body["message"] and "embeddings" in body["message"], body
    assert body["param"] == "model" and body["code"] == "not_supported_by_backend"
    rerank = httpx.post(
        f"{front.base_url}/v1/rerank", json={"model": "seeing-a", "query": "q", "documents": ["a"]}, timeout=60
    )
    assert rerank.status_code == 400 and "runs on vlm-anthropic" in rerank.json()["error"]["message"], rerank.text
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="seeing-o", prompt="Once", max_tokens=2)
    message = refused.value.body["message"]  # type: ignore[index]
    assert "vlm-openai" in message and "chat requests with n=1 only" in message


# --- a backend answering 404 ------------------------------------------------------------------------------


def test_a_backend_without_the_model_is_named_and_passed_over(
    front: ServerProcess, admin: Api, routed: ServerProcess
) -> None:
    lacks = _backend(admin, "lacks-it", "openai", routed.base_url)  # the vision server has no tiny-llama
    _rule(admin, "fallback", [lacks, _backend(admin, "here", "local", None)], TEXT_MODEL)
    _rule(admin, "lost", [lacks], TEXT_MODEL)
    client = _openai(front)
    out = client.chat.completions.create(model="fallback", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert out.usage and out.usage.completion_tokens == 2
    status = {s["name"]: s for s in admin.ok("GET", "/api/routing/status")}
    assert status["here"]["served"] == 1 and status["lacks-it"]["breaker"] == "closed"
    assert "Backend lacks-it failed for fallback (404)" in front.log()  # tried first (rule order), then passed over
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="lost", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    message = err.value.body["message"]  # type: ignore[index]
    assert "lacks-it" in message and f"POST {routed.base_url}/v1/chat/completions" in message


# --- a conversation with images continued on a text-only model ----------------------------------------------


def _as_placeholder(text: str = QUESTION) -> str:
    return f"[image]\n{text}"


def test_openai_chat_earlier_images_become_placeholders_for_a_text_model(front: ServerProcess) -> None:
    client = _openai(front)
    tail: list[Any] = [{"role": "assistant", "content": "A picture."}, {"role": "user", "content": "Tell me more."}]
    switched = client.chat.completions.create(
        model=TEXT_MODEL, messages=[*_image_chat(), *tail], max_tokens=6, temperature=0
    )
    written = [{"role": "user", "content": _as_placeholder()}, *tail]
    by_hand = client.chat.completions.create(model=TEXT_MODEL, messages=written, max_tokens=6, temperature=0)
    assert switched.usage and by_hand.usage and switched.usage.prompt_tokens == by_hand.usage.prompt_tokens
    assert switched.choices[0].message.content == by_hand.choices[0].message.content


def test_anthropic_earlier_images_become_placeholders_for_a_text_model(front: ServerProcess) -> None:
    claude = _claude(front)
    tail: list[Any] = [{"role": "assistant", "content": "A picture."}, {"role": "user", "content": "Tell me more."}]
    switched = claude.messages.create(model=TEXT_MODEL, max_tokens=4, messages=[*_image_message(), *tail])
    written: Any = [{"role": "user", "content": _as_placeholder()}, *tail]
    by_hand = claude.messages.create(model=TEXT_MODEL, max_tokens=4, messages=written)
    assert _prompt_tokens(switched) == _prompt_tokens(by_hand)
    counted = claude.messages.count_tokens(model=TEXT_MODEL, messages=[*_image_message(), *tail]).input_tokens
    assert counted == _prompt_tokens(switched)


def test_responses_switching_models_mid_conversation_keeps_the_images_as_placeholders(front: ServerProcess) -> None:
    client = _openai(front)
    parts: Any = [
        {"type": "input_image", "image_url": f"data:image/png;base64,{PICTURE}"},
        {"type": "input_text", "text": QUESTION},
    ]
    seen = client.responses.create(model=VLM, input=[{"role": "user", "content": parts}], max_output_tokens=4)
    switched = client.responses.create(
        model=TEXT_MODEL, input="Tell me more.", previous_response_id=seen.id, max_output_tokens=4
    )
    written: Any = [
        {"role": "user", "content": _as_placeholder()},
        {"role": "assistant", "content": seen.output_text},
        {"role": "user", "content": "Tell me more."},
    ]
    by_hand = client.responses.create(model=TEXT_MODEL, input=written, max_output_tokens=4)
    assert switched.usage and by_hand.usage and switched.usage.input_tokens == by_hand.usage.input_tokens
    with pytest.raises(openai.BadRequestError) as err:  # asking the text model about a new image
        client.responses.create(
            model=TEXT_MODEL, input=[{"role": "user", "content": parts}], previous_response_id=switched.id
        )
    assert f"'{TEXT_MODEL}' does not accept images" in err.value.body["message"]  # type: ignore[index]


def test_an_image_in_the_newest_turn_is_still_a_400_naming_the_text_model(front: ServerProcess) -> None:
    earlier: list[Any] = [*_image_chat(), {"role": "assistant", "content": "A picture."}]
    with pytest.raises(openai.BadRequestError) as err:
        _openai(front).chat.completions.create(model=TEXT_MODEL, messages=[*earlier, *_image_chat("And this?")])
    body: Any = err.value.body
    assert f"'{TEXT_MODEL}' does not accept images" in body["message"] and "text-only" in body["message"]
    assert body["param"] == "messages.2.content.0" and body["code"] == "images_not_supported"
    with pytest.raises(anthropic.BadRequestError) as refused:
        _claude(front).messages.create(model=TEXT_MODEL, max_tokens=4, messages=_image_message())
    assert f"'{TEXT_MODEL}' does not accept images" in refused.value.body["error"]["message"]  # type: ignore[index]
