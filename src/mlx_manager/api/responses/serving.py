"""The Responses API on the shared request path, with conversations kept in the database."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from mlx_manager.api.errors import APIError
from mlx_manager.api.replies import Disconnected, assemble, collect
from mlx_manager.api.request.normalize import Limits
from mlx_manager.api.request.start import Serving, Starter
from mlx_manager.api.request.streaming import MODEL_FAILED, stream_failure
from mlx_manager.api.responses import render
from mlx_manager.api.responses import translate as tr
from mlx_manager.api.responses.events import Events, ItemStream
from mlx_manager.api.responses.output import DeletedResponse, ResponseError, ResponseObject, Status
from mlx_manager.api.responses.schemas import ResponsesRequest
from mlx_manager.db.models import StoredResponse
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import GenerationChunk, Usage
from mlx_manager.manager.responses_store import ResponseStore


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

    def cancel(self) -> None:
        self.gen.cancel()

    async def wait_admitted(self) -> None:
        await self.gen.wait_admitted()


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
        return Started(gen, render.new_id("resp"), int(time.time()), history, caller.owner)

    async def _find(self, response_id: str, caller: Caller) -> StoredResponse | None:
        """The stored response if this caller may see it: someone else's is 'not found', as a missing one."""
        stored = await self.store.get(response_id)
        return stored if stored is not None and caller.may_see(stored) else None

    async def get(self, response_id: str, caller: Caller) -> dict[str, Any]:
        stored = await self._find(response_id, caller)
        if stored is None:
            raise APIError(404, f"Response '{response_id}' not found.", param="response_id")
        return stored.response

    async def delete(self, response_id: str, caller: Caller) -> DeletedResponse:
        if await self._find(response_id, caller) is None or not await self.store.delete(response_id):
            raise APIError(404, f"Response '{response_id}' not found.", param="response_id")
        return DeletedResponse(id=response_id)

    async def respond(self, req: ResponsesRequest, run: Started, is_disconnected: Disconnected) -> ResponseObject:
        chunks = (await collect(run.gen, is_disconnected)).get(0, [])
        reply = assemble(chunks, req.parallel_tool_calls is not False)
        status: Status = "incomplete" if reply.finish_reason == "length" else "completed"
        usage = render.usage(run.gen.usage, render.reasoning_tokens(chunks))
        response = render.response_object(req, run.response_id, run.created, status, render.output_items(reply), usage)
        await self._keep(req, run, response)
        return response

    async def stream(self, req: ResponsesRequest, run: Started) -> AsyncIterator[str]:
        events = Events()
        items = ItemStream(events)
        chunks: list[GenerationChunk] = []
        base = render.response_object(req, run.response_id, run.created, "in_progress", [], None)
        yield events.emit("response.created", response=base.model_dump())
        yield events.emit("response.in_progress", response=base.model_dump())
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
            failed = base.model_copy(
                update={"status": "failed", "error": ResponseError(code="server_error", message=message)}
            )
            yield events.emit("response.failed", response=failed.model_dump())
            return
        finally:
            run.gen.cancel()
        status: Status = "incomplete" if items.finish_reason == "length" else "completed"
        usage = render.usage(run.gen.usage, render.reasoning_tokens(chunks))
        response = render.response_object(req, run.response_id, run.created, status, items.done, usage)
        await self._keep(req, run, response)
        yield events.emit(f"response.{status}", response=response.model_dump())

    async def _keep(self, req: ResponsesRequest, run: Started, response: ResponseObject) -> None:
        if not req.store:
            return
        item = StoredResponse(
            id=run.response_id,
            created_at=run.created,
            model=req.model,
            input_items=run.history,
            instructions=req.instructions,
            response=response.model_dump(mode="json"),
            owner=run.owner,
        )
        await self.store.save(item)
