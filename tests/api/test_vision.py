"""Images reach a vision model through all three APIs on the shared generation path; text models refuse them."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import anthropic
import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from mlx_manager.testing.server import ServerProcess
from mlx_manager.testing.tiny_vlm import NAME as VLM
from mlx_manager.testing.tiny_vlm import image_tokens

QUESTION = "What is in this picture?"


def png(width: int, height: int, seed: int = 0) -> str:
    """Base64 PNG of random pixels (different seeds, different pictures)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def image_url(data: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


def chat(image: str | None, text: str = QUESTION) -> list[Any]:
    content: list[dict[str, Any]] = [image_url(image)] if image is not None else []
    return [{"role": "user", "content": [*content, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def vlm(vision_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{vision_server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def ask(client: openai.OpenAI, image: str | None, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=VLM, messages=chat(image), **{"max_tokens": 8, "temperature": 0, **kwargs}
    )


def test_image_tokens_are_counted_in_usage_by_image_size(vlm: openai.OpenAI) -> None:
    text_only = ask(vlm, None).usage.prompt_tokens
    for width, height in [(56, 56), (112, 112), (112, 56)]:
        out = ask(vlm, png(width, height))
        assert out.choices[0].message.content and out.choices[0].finish_reason == "length"
        # <|vision_start|> and <|vision_end|> around one token per 28x28 block of the image.
        assert out.usage.prompt_tokens == text_only + 2 + image_tokens(width, height)


def test_greedy_output_depends_on_the_image_not_on_chance(vlm: openai.OpenAI) -> None:
    first, again, other = (ask(vlm, png(56, 56, seed)).choices[0].message.content for seed in (1, 1, 2))
    assert first == again
    assert first != other


def test_an_image_reply_streams_with_usage(vlm: openai.OpenAI) -> None:
    whole = ask(vlm, png(56, 56, 3))
    stream = ask(vlm, png(56, 56, 3), stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]


def test_stop_strings_logprobs_and_n_work_with_images(vlm: openai.OpenAI) -> None:
    image = png(56, 56, 4)
    free = ask(vlm, image, max_tokens=12).choices[0].message.content
    stop = free[len(free) // 2 :][:3]
    cut = ask(vlm, image, max_tokens=12, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == free[: free.index(stop)]
    two = ask(vlm, image, n=2, logprobs=True, top_logprobs=2)
    assert [c.message.content for c in two.choices] == [ask(vlm, image).choices[0].message.content] * 2
    assert all(len(c.logprobs.content) == 8 and len(c.logprobs.content[0].top_logprobs) == 2 for c in two.choices)
    assert two.usage.completion_tokens == 16


def test_sampling_parameters_apply_to_image_prompts(vlm: openai.OpenAI) -> None:
    image = png(56, 56, 10)
    seeded = [ask(vlm, image, temperature=1.0, seed=7, max_tokens=12).choices[0].message.content for _ in range(2)]
    assert seeded[0] == seeded[1]
    extra = {"repetition_penalty": 1.5}
    penalized = ask(vlm, image, presence_penalty=1.0, logit_bias={"300": 5}, max_tokens=12, extra_body=extra)
    assert penalized.usage.completion_tokens == 12


def test_a_forced_tool_call_comes_back_parsed_after_an_image(vlm: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "maxLength": 10}},
        "required": ["label"],
        "additionalProperties": False,
    }
    tool = {"type": "function", "function": {"name": "describe", "parameters": schema}}
    out = ask(vlm, png(56, 56, 5), tools=[tool], tool_choice="required", max_tokens=100)
    call = out.choices[0].message.tool_calls[0]
    assert call.function.name == "describe" and out.choices[0].finish_reason == "tool_calls"


def test_a_client_that_leaves_frees_the_vision_model(vlm: openai.OpenAI, vision_server: ServerProcess) -> None:
    body = {"model": VLM, "messages": chat(png(56, 56, 6)), "max_tokens": 1500, "stream": True}
    with httpx.stream("POST", f"{vision_server.base_url}/v1/chat/completions", json=body, timeout=60) as resp:
        for line in resp.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # one token arrived: leave
    start = time.monotonic()
    assert ask(vlm, png(56, 56, 7)).choices[0].message.content  # queued behind the abandoned one, if it ran on
    assert time.monotonic() - start < 20
    entry = next(m for m in httpx.get(f"{vision_server.base_url}/admin/models").json()["data"] if m["id"] == VLM)
    assert entry["requests_cancelled"] >= 1


def test_anthropic_image_block_gets_a_message(vision_server: ServerProcess, vlm: openai.OpenAI) -> None:
    claude = anthropic.Anthropic(base_url=vision_server.base_url, api_key="unused", max_retries=0, timeout=60)
    image = png(112, 112, 8)
    source = {"type": "base64", "media_type": "image/png", "data": image}
    messages: Any = [
        {"role": "user", "content": [{"type": "image", "source": source}, {"type": "text", "text": QUESTION}]}
    ]
    out = claude.messages.create(model=VLM, max_tokens=8, messages=messages, extra_body={"temperature": 0})
    assert out.content[0].type == "text" and out.content[0].text and out.stop_reason == "max_tokens"
    assert out.usage.input_tokens == ask(vlm, image).usage.prompt_tokens  # the same prompt, image tokens included
    assert claude.messages.count_tokens(model=VLM, messages=messages).input_tokens == out.usage.input_tokens
    with claude.messages.stream(model=VLM, max_tokens=8, messages=messages, extra_body={"temperature": 0}) as stream:
        assert "".join(stream.text_stream) == out.content[0].text


def test_responses_input_image_gets_a_reply(vlm: openai.OpenAI) -> None:
    image = png(56, 56, 9)
    parts = [
        {"type": "input_image", "image_url": f"data:image/png;base64,{image}"},
        {"type": "input_text", "text": QUESTION},
    ]
    out = vlm.responses.create(
        model=VLM, input=[{"role": "user", "content": parts}], max_output_tokens=8, temperature=0
    )
    assert out.output_text == ask(vlm, image).choices[0].message.content
    assert out.usage.input_tokens == ask(vlm, image).usage.prompt_tokens


def test_text_only_requests_still_work_on_a_vision_model(vlm: openai.OpenAI) -> None:
    out = vlm.chat.completions.create(model=VLM, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert out.choices[0].message.content and out.usage.completion_tokens == 4
    assert vlm.completions.create(model=VLM, prompt="Once upon", max_tokens=4).usage.completion_tokens == 4


def solid_png(width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(
    ("url", "word"),
    [
        (f"data:image/png;base64,{png(200, 200)}", "max_image_bytes"),  # random pixels: over 100,000 bytes
        (f"data:image/png;base64,{solid_png(256, 256)}", "max_image_pixels"),  # small file, 65,536 pixels
        ("data:image/png;base64,@@not base64@@", "base64"),
        (f"data:text/plain;base64,{base64.b64encode(b'hello').decode()}", "could not be read"),
        ("data:image/png,rawbytes", "data: URL"),
        ("https://example.com/cat.png", "not fetched"),
    ],
)
def test_bad_images_are_a_400_naming_the_problem(vlm: openai.OpenAI, url: str, word: str) -> None:
    messages: Any = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    with pytest.raises(openai.BadRequestError) as err:
        vlm.chat.completions.create(model=VLM, messages=messages, max_tokens=2)
    assert word in err.value.body["message"]  # type: ignore[index]
    assert err.value.body["param"] == "messages.0.content.0"  # type: ignore[index]


# --- text-only models refuse images, each API in its own error shape -------------------------------------


def _post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=60)


def test_a_text_model_refuses_openai_image_parts(server: ServerProcess) -> None:
    resp = _post(server, "/v1/chat/completions", {"model": "tiny-llama", "messages": chat(png(56, 56))})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert "does not accept images" in error["message"] and "image_url" in error["message"]
    assert error["type"] == "invalid_request_error" and error["param"] == "messages.0.content.0"


def test_a_text_model_refuses_anthropic_image_blocks(server: ServerProcess) -> None:
    source = {"type": "base64", "media_type": "image/png", "data": png(56, 56)}
    messages = [{"role": "user", "content": [{"type": "image", "source": source}, {"type": "text", "text": "x"}]}]
    for path, extra in (("/v1/messages", {"max_tokens": 4}), ("/v1/messages/count_tokens", {})):
        resp = _post(server, path, {"model": "tiny-llama", "messages": messages, **extra})
        assert resp.status_code == 400
        body = resp.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert "does not accept images" in body["error"]["message"]


def test_a_text_model_refuses_responses_input_image(server: ServerProcess) -> None:
    part = {"type": "input_image", "image_url": f"data:image/png;base64,{png(56, 56)}"}
    resp = _post(server, "/v1/responses", {"model": "tiny-llama", "input": [{"role": "user", "content": [part]}]})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert "does not accept images" in error["message"] and "input_image" in error["message"]
