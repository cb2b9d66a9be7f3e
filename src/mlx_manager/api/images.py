"""Images in chat requests, shared by the three APIs: base64 and data: URLs to decoded RGB images, within limits.

Translators put an image where it appears as a {"type": "image", "ref": ImageRef} content part (the chat
templates' own convention, plus where it came from); `attach_images` then checks that the model accepts images
(a 400 before anything is decoded or loaded), decodes them off the event loop and hands the engine the plain
{"type": "image"} parts with the images in the same order. Remote http(s) URLs are refused with a 400: the
server is offline-first and fetches nothing from the network.
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
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.types import ChatPrompt

_DATA_URL = re.compile(r"data:(?P<media>[^;,]*)(?:;[^;,]*)*?;base64,(?P<data>.*)", re.DOTALL)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 << 20
    max_pixels: int = 4096 * 4096


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
    if any(p["type"] == "image" for p in parts):
        return parts
    return separator.join(p["text"] for p in parts)


def _refs(prompt: ChatPrompt) -> list[ImageRef]:
    return [
        part["ref"]
        for message in prompt.messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and isinstance(part.get("ref"), ImageRef)
    ]


async def attach_images(engine: Engine, model_id: str, prompt: ChatPrompt, limits: ImageLimits) -> ChatPrompt:
    """The prompt with its images decoded, or a 400: the model is text-only, or an image is bad or too large."""
    refs = _refs(prompt)
    if not refs:
        return prompt
    info = await engine.resolve_for(model_id, "generate")
    if not info.vision:
        kinds = ", ".join(dict.fromkeys(r.kind for r in refs))
        raise APIError(
            400,
            f"The model '{model_id}' does not accept images ({kinds} content): it is a text-only model."
            " Send text only, or use a vision model.",
            param=refs[0].param,
            code="images_not_supported",
        )
    images = await asyncio.to_thread(lambda: tuple(decode(ref, limits) for ref in refs))
    messages = [
        {**m, "content": [{"type": "image"} if "ref" in p else p for p in m["content"]]}
        if isinstance(m.get("content"), list)
        else m
        for m in prompt.messages
    ]
    return replace(prompt, messages=messages, images=images)


def decode(ref: ImageRef, limits: ImageLimits) -> Image.Image:
    if ref.data is not None:
        return decode_base64(ref.data, limits, ref.param)
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
    return decode_base64(match["data"], limits, ref.param)


def decode_base64(data: str, limits: ImageLimits, param: str) -> Image.Image:
    data = "".join(data.split())  # some clients wrap base64 in lines
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
    try:
        return image.convert("RGB")
    except Exception as exc:  # a truncated or corrupt body fails only when decoded
        raise _unreadable(exc, param) from exc


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
