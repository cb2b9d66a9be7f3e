"""The Responses API on the shared engine path, with conversations kept in the database."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.api.errors import APIError
from mlx_manager.api.replies import Disconnected, api_finish, assemble, collect
from mlx_manager.api.request.normalize import Limits
from mlx_manager.api.request.start import Serving, Starter
from mlx_manager.api.request.streaming import MODEL_FAILED, stream_failure
from mlx_manager.api.responses import translate as tr
from mlx_manager.api.responses.schemas import ResponsesRequest
from mlx_manager.db.models import StoredResponse
from mlx_manager.db.responses import ResponseStore
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import GenerationChunk, Usage


@dataclass(frozen=True)
class Caller:
    """Who asks for a stored response: its owner (a user's uid, "server" for the server key, None anonymous) and
    whether they are an admin, who may see everyone's."""

    owner: str | None = None
    is_admin: bool = False

    def may_see(self, stored: StoredResponse) -> bool:
        return self.is_admin or stored.owner == self.owner


@dataclass
class Started:
    """A generation under way, with what the response will need: its id, the conversation it answers and whose
    it is."""

    gen: Generation
    response_id: str
    created: int
    history: list[dict[str, Any]]
    owner: str | None = None

    @property
    def usage(self) -> Usage:
        return self.gen.usage

    @property
    def backend(self) -> str:
        return self.gen.backend


class ResponsesServing(Serving):
    def __init__(self, starter: Starter, limits: Limits, store: ResponseStore) -> None:
        super().__init__(starter, limits)
        self.store = store

    async def start(self, req: ResponsesRequest, caller: Caller) -> Started:
        if req.background:
            raise APIError(400, "background responses are not supported by this server.", param="background")
        history: list[dict[str, Any]] = []
        if req.previous_response_id:
            previous = await self._find(req.previous_response_id, caller)
            if previous is None:
                raise APIError(
                    404, f"Previous response '{req.previous_response_id}' not found.", param="previous_response_id"
                )
            history = [*previous.input_items, *previous.response.get("output", [])]
        history += tr.input_items(req)
        gen = await self.starter.start(tr.engine_request(req, history))
        return Started(gen, tr.new_id("resp"), int(time.time()), history, caller.owner)

    async def _find(self, response_id: str, caller: Caller) -> StoredResponse | None:
        """The stored response if this caller may see it: someone else's is 'not found', as a missing one."""
        stored = await self.store.get(response_id)
        return stored if stored is not None and caller.may_see(stored) else None

    async def get(self, response_id: str, caller: Caller) -> dict[str, Any]:
        stored = await self._find(response_id, caller)
        if stored is None:
            raise APIError(404, f"Response '{response_id}' not found.", param="response_id")
        return stored.response

    async def delete(self, response_id: str, caller: Caller) -> dict[str, Any]:
        if await self._find(response_id, caller) is None or not await self.store.delete(response_id):
            raise APIError(404, f"Response '{response_id}' not found.", param="response_id")
        return {"id": response_id, "object": "response", "deleted": True}

    async def respond(self, req: ResponsesRequest, run: Started, is_disconnected: Disconnected) -> dict[str, Any]:
        chunks = (await collect(run.gen, is_disconnected)).get(0, [])
        reply = assemble(chunks, req.parallel_tool_calls is not False)
        status = "incomplete" if reply.finish_reason == "length" else "completed"
        usage = tr.usage(run.gen.usage, tr.reasoning_tokens(chunks))
        response = tr.response_object(req, run.response_id, run.created, status, tr.output_items(reply), usage)
        await self._keep(req, run, response)
        return response

    async def stream(self, req: ResponsesRequest, run: Started) -> AsyncIterator[str]:
        events = _Events()
        items = _ItemStream(events)
        chunks: list[GenerationChunk] = []
        base = tr.response_object(req, run.response_id, run.created, "in_progress", [], None)
        yield events.emit("response.created", response=base)
        yield events.emit("response.in_progress", response=base)
        try:
            async for chunk in run.gen:
                chunks.append(chunk)
                for event in items.feed(chunk, req.parallel_tool_calls is not False):
                    yield event
            for event in items.close():
                yield event
        except Exception as exc:
            err = stream_failure(exc)
            message = err.message if err else MODEL_FAILED
            yield events.emit("error", code=err.code if err else "server_error", message=message, param=None)
            failed = {**base, "status": "failed", "error": {"code": "server_error", "message": message}}
            yield events.emit("response.failed", response=failed)
            return
        finally:
            run.gen.cancel()
        status = "incomplete" if items.finish_reason == "length" else "completed"
        usage = tr.usage(run.gen.usage, tr.reasoning_tokens(chunks))
        response = tr.response_object(req, run.response_id, run.created, status, items.done, usage)
        await self._keep(req, run, response)
        yield events.emit(f"response.{status}", response=response)

    async def _keep(self, req: ResponsesRequest, run: Started, response: dict[str, Any]) -> None:
        if not req.store:
            return
        item = StoredResponse(
            id=run.response_id,
            created_at=run.created,
            model=req.model,
            input_items=run.history,
            instructions=req.instructions,
            response=response,
            owner=run.owner,
        )
        await self.store.save(item)


@dataclass
class _Events:
    sequence: int = 0

    def emit(self, kind: str, **data: Any) -> str:
        body = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return json.dumps(body, ensure_ascii=False)


@dataclass
class _ItemStream:
    """Engine chunks to output items (reasoning, message, function_call), each added, filled and done."""

    events: _Events
    done: list[dict[str, Any]] = field(default_factory=list)
    kind: str | None = None
    item: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    calls: set[int] = field(default_factory=set)
    finish_reason: str | None = None

    @property
    def index(self) -> int:
        return len(self.done)

    def feed(self, chunk: GenerationChunk, parallel: bool) -> list[str]:
        out: list[str] = []
        if chunk.reasoning:
            if self.kind != "reasoning":
                out += self._open("reasoning", tr.reasoning_item(tr.new_id("rs"), None, "in_progress"))
                out.append(self._part_added({"type": "reasoning_text", "text": ""}))
            out.append(self._delta("response.reasoning_text.delta", chunk.reasoning))
        if chunk.text and (self.kind == "message" or chunk.text.strip()):
            if self.kind != "message":
                out += self._open("message", tr.message_item(tr.new_id("msg"), None, "in_progress"))
                out.append(self._part_added({"type": "output_text", "text": "", "annotations": [], "logprobs": []}))
            out.append(self._delta("response.output_text.delta", chunk.text if self.text else chunk.text.lstrip()))
        for call in chunk.tool_calls:
            if call.index > 0 and not parallel:
                continue
            if call.index not in self.calls:
                self.calls.add(call.index)
                item = tr.function_call_item(tr.new_id("fc"), call.id or "", call.name or "", "", "in_progress")
                out += self._open("function_call", item)
            if call.arguments:
                out.append(self._delta("response.function_call_arguments.delta", call.arguments))
        if chunk.finish_reason is not None:
            self.finish_reason = api_finish(chunk.finish_reason)
        return out

    def close(self) -> list[str]:
        out = self._close()
        if not self.done:  # an empty answer is still one (empty) message
            out += self._open("message", tr.message_item(tr.new_id("msg"), None, "in_progress"))
            out.append(self._part_added({"type": "output_text", "text": "", "annotations": [], "logprobs": []}))
            out += self._close()
        return out

    def _open(self, kind: str, item: dict[str, Any]) -> list[str]:
        out = self._close()
        self.kind, self.item, self.text = kind, item, ""
        return [*out, self.events.emit("response.output_item.added", output_index=self.index, item=item)]

    def _part_added(self, part: dict[str, Any]) -> str:
        ids = {"item_id": self.item["id"], "output_index": self.index, "content_index": 0}
        return self.events.emit("response.content_part.added", **ids, part=part)

    def _delta(self, kind: str, text: str) -> str:
        self.text += text
        ids: dict[str, Any] = {"item_id": self.item["id"], "output_index": self.index}
        if kind == "response.output_text.delta":
            return self.events.emit(kind, **ids, content_index=0, delta=text, logprobs=[])
        if kind == "response.reasoning_text.delta":
            return self.events.emit(kind, **ids, content_index=0, delta=text)
        return self.events.emit(kind, **ids, delta=text)

    def _close(self) -> list[str]:
        if self.kind is None:
            return []
        ids: dict[str, Any] = {"item_id": self.item["id"], "output_index": self.index}
        out = []
        if self.kind == "function_call":
            item = {**self.item, "arguments": self.text or "{}", "status": "completed"}
            done = {"name": item["name"], "arguments": item["arguments"]}
            out.append(self.events.emit("response.function_call_arguments.done", **ids, **done))
        elif self.kind == "reasoning":
            part = {"type": "reasoning_text", "text": self.text}
            item = {**self.item, "content": [part], "status": "completed"}
            out.append(self.events.emit("response.reasoning_text.done", **ids, content_index=0, text=self.text))
            out.append(self.events.emit("response.content_part.done", **ids, content_index=0, part=part))
        else:
            part = tr.output_text(self.text)
            item = {**self.item, "content": [part], "status": "completed"}
            text_done = {"content_index": 0, "text": self.text, "logprobs": []}
            out.append(self.events.emit("response.output_text.done", **ids, **text_done))
            out.append(self.events.emit("response.content_part.done", **ids, content_index=0, part=part))
        out.append(self.events.emit("response.output_item.done", output_index=self.index, item=item))
        self.done.append(item)
        self.kind = None
        return out
