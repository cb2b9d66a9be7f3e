"""A vision model batches its requests (images from all three APIs, and text) and reuses what it computed: encoded
images by content, and the KV of a prompt up to where its text or its images differ. Through a real server."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess
from mlx_manager.testing.tiny_vlm import NAME as VLM
from tests.api.test_vision import QUESTION, chat, png

SYSTEM = "You are a patient assistant who describes pictures in plain words, one detail at a time. " * 3


@pytest.fixture(scope="module")
def vlm(vision_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{vision_server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def claude(vision_server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=vision_server.base_url, api_key="unused", max_retries=0, timeout=120)


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=30).text
    found = re.search(rf'^{name}(?:_total)?{{model="{re.escape(VLM)}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def openai_reply(client: openai.OpenAI, image: str | None, **kwargs: Any) -> str:
    out = client.chat.completions.create(model=VLM, messages=chat(image), **{"temperature": 0, **kwargs})
    return out.choices[0].message.content or ""


def anthropic_reply(client: anthropic.Anthropic, image: str, max_tokens: int) -> str:
    source = {"type": "base64", "media_type": "image/png", "data": image}
    messages: Any = [
        {"role": "user", "content": [{"type": "image", "source": source}, {"type": "text", "text": QUESTION}]}
    ]
    out = client.messages.create(model=VLM, max_tokens=max_tokens, messages=messages, extra_body={"temperature": 0})
    return "".join(block.text for block in out.content if block.type == "text")


def responses_reply(client: openai.OpenAI, image: str, max_tokens: int) -> str:
    parts = [
        {"type": "input_image", "image_url": f"data:image/png;base64,{image}"},
        {"type": "input_text", "text": QUESTION},
    ]
    out = client.responses.create(
        model=VLM, input=[{"role": "user", "content": parts}], max_output_tokens=max_tokens, temperature=0
    )
    return out.output_text


def test_image_requests_from_all_apis_and_text_decode_in_one_batch_with_the_answers_of_one_at_a_time(
    vision_server: ServerProcess, vlm: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    images = [png(56 * (1 + i % 2), 56 * (1 + i % 3), 200 + i) for i in range(6)]
    jobs: list[Any] = [
        lambda: openai_reply(vlm, images[0], max_tokens=48),
        lambda: openai_reply(vlm, images[1], max_tokens=40, stop=[" the"]),  # its own stop string
        lambda: openai_reply(vlm, images[2], max_tokens=48, temperature=1.0, seed=7),  # its own sampler
        lambda: anthropic_reply(claude, images[3], 48),
        lambda: anthropic_reply(claude, images[4], 32),  # its own max_tokens
        lambda: responses_reply(vlm, images[5], 48),
        lambda: openai_reply(vlm, None, max_tokens=48),  # text only, same model, same batch
    ]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: job(), jobs))
    assert metric(vision_server, "mlx_manager_decode_batch_peak") >= 5
    alone = [job() for job in jobs]
    assert together == alone
    assert all(together)


def test_a_repeated_image_is_encoded_once_whichever_api_sends_it(
    vision_server: ServerProcess, vlm: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    image = png(112, 56, 300)
    hits = metric(vision_server, "mlx_manager_vision_feature_cache_hits")
    misses = metric(vision_server, "mlx_manager_vision_feature_cache_misses")
    first = openai_reply(vlm, image, max_tokens=12)
    assert metric(vision_server, "mlx_manager_vision_feature_cache_misses") == misses + 1
    assert anthropic_reply(claude, image, 12) == first
    assert responses_reply(vlm, image, 12) == first
    assert metric(vision_server, "mlx_manager_vision_feature_cache_hits") == hits + 2
    assert metric(vision_server, "mlx_manager_vision_feature_cache_misses") == misses + 1
    assert metric(vision_server, "mlx_manager_vision_feature_cache_bytes") > 0
    openai_reply(vlm, png(112, 56, 301), max_tokens=4)  # other bytes, same size: encoded
    assert metric(vision_server, "mlx_manager_vision_feature_cache_misses") == misses + 2


def test_a_repeated_image_reuses_the_whole_prompt_and_another_image_the_text_before_it(vlm: openai.OpenAI) -> None:
    def ask(image: str) -> tuple[str, int, int]:
        messages: Any = [{"role": "system", "content": SYSTEM}, *chat(image)]
        out = vlm.chat.completions.create(model=VLM, messages=messages, max_tokens=12, temperature=0)
        details = out.usage.prompt_tokens_details
        return out.choices[0].message.content or "", details.cached_tokens if details else 0, out.usage.prompt_tokens

    first, cached, prompt = ask(png(56, 112, 400))
    assert cached == 0
    again, cached, _ = ask(png(56, 112, 400))
    assert again == first and cached == prompt - 1  # all but the last token, the image's KV included
    other, cached, _ = ask(png(56, 112, 401))  # same size, other pixels: only the system prompt's blocks
    assert other and 32 <= cached < prompt - 8


def test_a_second_turn_that_adds_an_image_reuses_the_first_turn_and_its_image(
    vision_server: ServerProcess, vlm: openai.OpenAI
) -> None:
    first, second = png(56, 56, 500), png(112, 56, 501)
    turn: list[Any] = [{"role": "system", "content": SYSTEM}, *chat(first, "What is this?")]
    out = vlm.chat.completions.create(model=VLM, messages=turn, max_tokens=8, temperature=0)
    reply = out.choices[0].message.content or ""
    hits = metric(vision_server, "mlx_manager_vision_feature_cache_hits")
    misses = metric(vision_server, "mlx_manager_vision_feature_cache_misses")
    turn += [{"role": "assistant", "content": reply}, *chat(second, "And this one?")]
    again = vlm.chat.completions.create(model=VLM, messages=turn, max_tokens=8, temperature=0)
    details = again.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens >= out.usage.prompt_tokens - 1  # through the first image
    assert metric(vision_server, "mlx_manager_vision_feature_cache_hits") == hits + 1  # the first image, again
    assert metric(vision_server, "mlx_manager_vision_feature_cache_misses") == misses + 1  # the new one
