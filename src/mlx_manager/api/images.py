"""Images in chat requests, shared by the three APIs: base64 and data: URLs to decoded RGB images, within limits.

Translators put an image where it appears as a {"type": "image", "ref": ImageRef} content part (the chat
templates' own convention, plus where it came from); `attach_images` then checks that the model accepts images
(a 400 before anything is decoded or loaded), decodes them off the event loop and hands the engine the plain
{"type": "image"} parts with the images in the same order (and as data: URLs, for a remote backend). Remote
http(s) URLs are refused with a 400: the server is offline-first and fetches nothing from the network.

A text-only model still takes a conversation whose earlier turns held images (the user switched models mid-chat):
each of those images becomes the text "[image]". An image in the newest turn, the one the model answers, stays a
400. A model that a routing rule sends elsewhere gets its images as sent: its backend decides (the backend's
`capabilities` say which: engine/backend.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from mlx_manager.api.errors import APIError
from mlx_manager.config import default
from mlx_manager.engine.backend import Backend
from mlx_manager.engine.types import ChatPrompt, Prompt

IMAGE_PLACEHOLDER = "[image]"  # what a text-only model reads where an earlier turn held an image
# Image types OpenAI, Anthropic and vLLM all take; anything else goes to a remote backend re-encoded as PNG.
_PORTABLE_MEDIA = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"data:(?P<media>[^;,]*)(?:;[^;,]*)*?;base64,(?P<data>.*)", re.DOTALL)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = default("max_image_bytes")
    max_pixels: int = default("max_image_pixels")


@dataclass(frozen=True)
class ImageRef:
    """An image as the client sent it: a URL (data: or remote) or bare base64 data, and where it was."""

    param: str
    kind: str  # the client's name for it: image_url, image (Anthropic), input_image (Responses)
    url: str | None = None
    data: str | None = None


def image_part(ref: ImageRef) -> dict[str, Any]:
    return {"type": "image", "ref": ref}


def url_part(value: Any, param: str, kind: str) -> dict[str, Any]:
    """The part for an image given by URL: a string, or OpenAI's {"url": ...}."""
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise APIError(400, f"A {kind} part needs the image as a data: URL.", param=param)
    return image_part(ImageRef(param=param, kind=kind, url=url))


def content(parts: list[dict[str, Any]], separator: str) -> str | list[dict[str, Any]]:
    """A message's content for the chat template: plain text when there are no images (as text models expect),
    else the parts in order: {"type": "text", "text": ...} and {"type": "image"}."""
    if any(p["type"] in ("image", "audio") for p in parts):
        return parts
    return separator.join(p["text"] for p in parts)


def _refs(prompt: ChatPrompt) -> list[ImageRef]:
    return [ref for message in prompt.messages for ref in _message_refs(message)]


def _message_refs(message: dict[str, Any]) -> list[ImageRef]:
    parts = message.get("content")
    if not isinstance(parts, list):
        return []
    return [p["ref"] for p in parts if isinstance(p, dict) and isinstance(p.get("ref"), ImageRef)]


async def attach_images(backend: Backend, model_id: str, prompt: Prompt, limits: ImageLimits) -> Prompt:
    """The prompt with its images decoded, or a 400: an image is bad or too large, or a text-only model is asked
    about one. A model a routing rule sends elsewhere may see or not: its backend decides."""
    if not isinstance(prompt, ChatPrompt) or not (refs := _refs(prompt)):
        return prompt
    capabilities = await backend.capabilities(model_id)
    if capabilities.task not in (None, "generate"):
        return prompt  # the backend refuses it, naming what the model is for
    if capabilities.images is False:
        return _without_images(model_id, prompt)
    decoded = await asyncio.to_thread(lambda: tuple(decode_with_url(ref, limits) for ref in refs))
    messages = [
        {**m, "content": [{"type": "image"} if isinstance(p.get("ref"), ImageRef) else p for p in m["content"]]}
        if isinstance(m.get("content"), list)
        else m
        for m in prompt.messages
    ]
    images, urls = tuple(d[0] for d in decoded), tuple(d[1] for d in decoded)
    return replace(prompt, messages=messages, images=images, image_urls=urls)


def _without_images(model_id: str, prompt: ChatPrompt) -> ChatPrompt:
    """Earlier turns' images as "[image]" for a text-only model; a 400 when the newest turn holds one."""
    current = _current_turn(prompt)
    asked = [r for m in prompt.messages[current:] for r in _message_refs(m)]
    if asked:
        kinds = ", ".join(dict.fromkeys(r.kind for r in asked))
        raise APIError(
            400,
            f"The model '{model_id}' does not accept images ({kinds} content): it is a text-only model."
            " Send text only, or use a vision model.",
            param=asked[0].param,
            code="images_not_supported",
        )
    messages = [{**m, "content": _placeholders(m["content"])} if _message_refs(m) else m for m in prompt.messages]
    return replace(prompt, messages=messages)


def _placeholders(parts: list[dict[str, Any]]) -> str:
    # Plain text, as text-only chat templates expect; each image on a line of its own.
    return "\n".join(IMAGE_PLACEHOLDER if "ref" in p else str(p.get("text") or "") for p in parts)


def _current_turn(prompt: ChatPrompt) -> int:
    """Where the newest turn starts: after the last assistant message (an Anthropic prefill does not count)."""
    end = len(prompt.messages) - 1 if prompt.continue_final else len(prompt.messages)
    return next((i + 1 for i in range(end - 1, -1, -1) if prompt.messages[i].get("role") == "assistant"), 0)


def decode_with_url(ref: ImageRef, limits: ImageLimits) -> tuple[Image.Image, str]:
    """The decoded image and a data: URL of it for a remote backend: the client's bytes when the media type is
    one every API takes, else the image again as PNG."""
    data = ref.data if ref.data is not None else _url_data(ref)
    data = "".join(data.split())  # some clients wrap base64 in lines
    image = open_base64(data, limits, ref.param)
    media = Image.MIME.get(image.format or "", "")
    try:
        rgb = image.convert("RGB")
    except Exception as exc:  # a truncated or corrupt body fails only when decoded
        raise _unreadable(exc, ref.param) from exc
    if media not in _PORTABLE_MEDIA:
        buf = io.BytesIO()
        rgb.save(buf, "PNG")
        media, data = "image/png", base64.b64encode(buf.getvalue()).decode()
    return rgb, f"data:{media};base64,{data}"


def _url_data(ref: ImageRef) -> str:
    url = ref.url or ""
    if url.startswith(("http://", "https://")):
        raise APIError(
            400,
            "Image URLs are not fetched: this server works offline. Send the image inline, as a data: URL"
            " (data:image/png;base64,...) or base64 data.",
            param=ref.param,
            code="image_url_not_supported",
        )
    match = _DATA_URL.fullmatch(url)
    if match is None:
        message = "An image must be a base64 data: URL (data:image/png;base64,...)."
        raise APIError(400, message, param=ref.param, code="invalid_image")
    return match["data"]


def open_base64(data: str, limits: ImageLimits, param: str) -> Image.Image:
    """The image opened from its header, within the limits; its pixels are decoded by whoever converts it."""
    if len(data) // 4 * 3 > limits.max_bytes + 2:  # refuse before decoding a huge payload
        raise _too_large(len(data) // 4 * 3, limits, param)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(400, f"The image is not valid base64: {exc}", param=param, code="invalid_image") from exc
    if len(raw) > limits.max_bytes:
        raise _too_large(len(raw), limits, param)
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size  # from the header: checked before the pixels are decoded
    except Exception as exc:  # PIL raises OSError, SyntaxError, DecompressionBombError, ...
        raise _unreadable(exc, param) from exc
    if width * height > limits.max_pixels:
        raise APIError(
            400,
            f"The image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels} pixels"
            " (max_image_pixels).",
            param=param,
            code="image_too_large",
        )
    return image


def _too_large(size: int, limits: ImageLimits, param: str) -> APIError:
    return APIError(
        400,
        f"The image is {size} bytes; the limit is {limits.max_bytes} bytes (max_image_bytes).",
        param=param,
        code="image_too_large",
    )


def _unreadable(exc: Exception, param: str) -> APIError:
    return APIError(
        400, f"The image could not be read (PNG, JPEG, WebP or GIF expected): {exc}", param=param, code="invalid_image"
    )
