"""Anthropic Messages on the shared engine path: translate in, generate, translate the reply or its stream out."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.api.anthropic import translate
from mlx_manager.api.anthropic.errors import anthropic_error_body
from mlx_manager.api.anthropic.schemas import CountTokensRequest, Message, MessagesRequest, TokenCount
from mlx_manager.api.replies import Disconnected, api_finish, assemble, collect
from mlx_manager.api.request.start import Serving
from mlx_manager.api.request.streaming import MODEL_FAILED, stream_failure
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import GenerationChunk


class AnthropicServing(Serving):
    async def start(self, req: MessagesRequest) -> Generation:
        return await self.starter.start(translate.engine_request(req, self.limits))

    async def count_tokens(self, req: CountTokensRequest) -> TokenCount:
        return TokenCount(input_tokens=await self.starter.count_tokens(req.model, translate.chat_prompt(req)))

    async def message(self, req: MessagesRequest, gen: Generation, is_disconnected: Disconnected) -> Message:
        chunks = (await collect(gen, is_disconnected)).get(0, [])
        reply = assemble(chunks, parallel=True)
        return Message(
            id=_message_id(),
            model=req.model,
            content=translate.content_blocks(reply, translate.shows_thinking(req)),
            stop_reason=translate.stop_reason(reply.finish_reason, reply.stop_sequence),
            stop_sequence=reply.stop_sequence,
            usage=translate.usage(gen.usage),
        )

    async def stream(self, req: MessagesRequest, gen: Generation) -> AsyncIterator[dict[str, str]]:
        """SSE events in Anthropic's order; message_start waits for the first output so its usage is exact."""
        blocks = _BlockStream(show_thinking=translate.shows_thinking(req))
        started = False
        try:
            async for chunk in gen:
                if not started:
                    started = True
                    yield _start_event(req, gen)
                    yield _event("ping", {"type": "ping"})
                for event in blocks.feed(chunk):
                    yield event
            if not started:
                yield _start_event(req, gen)
            for event in blocks.close():
                yield event
        except Exception as exc:
            yield _error_event(exc)
            return
        finally:
            gen.cancel()
        usage = translate.usage(gen.usage).model_dump()
        delta = {
            "stop_reason": translate.stop_reason(blocks.finish_reason, blocks.stop_sequence),
            "stop_sequence": blocks.stop_sequence,
        }
        yield _event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        yield _event("message_stop", {"type": "message_stop"})


@dataclass
class _BlockStream:
    """Turns engine chunks into content blocks: thinking, text and tool_use, each started, filled and stopped."""

    show_thinking: bool = True
    index: int = -1
    kind: str | None = None  # the open block's type
    held: str = ""  # whitespace that opens no text block of its own
    calls: dict[int, int] = field(default_factory=dict)  # engine call index -> block index
    finish_reason: str | None = None
    stop_sequence: str | None = None

    def feed(self, chunk: GenerationChunk) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        if chunk.reasoning:
            if self.kind != "thinking":
                out += self._open({"type": "thinking", "thinking": "", "signature": ""})
            if self.show_thinking:
                out.append(self._delta({"type": "thinking_delta", "thinking": chunk.reasoning}))
        if chunk.text:
            out += self._text(chunk.text)
        for call in chunk.tool_calls:
            if call.id is not None or call.index not in self.calls:
                start = {"type": "tool_use", "id": translate.to_tool_use_id(call.id or ""), "name": call.name or ""}
                out += self._open({**start, "input": {}})
                self.calls[call.index] = self.index
            if call.arguments:
                out.append(self._delta({"type": "input_json_delta", "partial_json": call.arguments}))
        if chunk.finish_reason is not None:
            self.finish_reason = api_finish(chunk.finish_reason)
            self.stop_sequence = chunk.stop_sequence
        return out

    def close(self) -> list[dict[str, str]]:
        out = self._stop()
        if self.index < 0:  # an empty reply is still one (empty) text block
            out += self._open({"type": "text", "text": ""}) + self._stop()
        return out

    def _text(self, text: str) -> list[dict[str, str]]:
        if self.kind != "text":
            text = self.held + text
            self.held = ""
            if not text.strip():
                self.held = text
                return []
            opened = self._open({"type": "text", "text": ""})
            return [*opened, self._delta({"type": "text_delta", "text": text.lstrip()})]
        return [self._delta({"type": "text_delta", "text": text})]

    def _open(self, block: dict[str, Any]) -> list[dict[str, str]]:
        out = self._stop()
        self.index += 1
        self.kind = block["type"]
        start = {"type": "content_block_start", "index": self.index, "content_block": block}
        return [*out, _event("content_block_start", start)]

    def _stop(self) -> list[dict[str, str]]:
        if self.kind is None:
            return []
        out = []
        if self.kind == "thinking":  # real thinking blocks end with a signature; a local model has none
            out.append(self._delta({"type": "signature_delta", "signature": ""}))
        self.kind = None
        return [*out, _event("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _delta(self, delta: dict[str, Any]) -> dict[str, str]:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _event(name: str, data: dict[str, Any]) -> dict[str, str]:
    return {"event": name, "data": json.dumps(data, ensure_ascii=False)}


def _start_event(req: MessagesRequest, gen: Generation) -> dict[str, str]:
    usage = translate.usage(gen.usage).model_copy(update={"output_tokens": 0})
    message = Message(id=_message_id(), model=req.model, content=[], usage=usage)
    return _event("message_start", {"type": "message_start", "message": message.model_dump()})


def _error_event(exc: Exception) -> dict[str, str]:
    err = stream_failure(exc)
    body = anthropic_error_body(500, MODEL_FAILED) if err is None else anthropic_error_body(err.status, err.message)
    return _event("error", body)
