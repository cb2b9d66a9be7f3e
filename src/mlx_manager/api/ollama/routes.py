"""Thin Ollama routes (/api/chat, /api/generate, /api/embed, the model management routes) and the root that
Ollama's clients probe. The generation and read routes take API keys like /v1; pull, delete and copy change
the server and need an admin (the server key once one is set), as /admin does."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from mlx_manager import __version__
from mlx_manager.api.access import record
from mlx_manager.api.deps import ProfilesDep
from mlx_manager.api.errors import APIError
from mlx_manager.api.ollama import catalog
from mlx_manager.api.ollama.schemas import (
    ChatChunk,
    ChatRequest,
    CopyRequest,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    EmbedResponse,
    GenerateChunk,
    GenerateRequest,
    NamedModel,
    Progress,
    PullRequest,
    Running,
    Show,
    ShowRequest,
    Tags,
    Version,
)
from mlx_manager.api.ollama.serving import OllamaServing
from mlx_manager.api.request.limits import admitted, within
from mlx_manager.api.request.streaming import stream_failure
from mlx_manager.api.security import require_admin, require_api_key
from mlx_manager.api.unicode_check import UnicodeCheckedRoute
from mlx_manager.api.web import WebUI
from mlx_manager.manager.downloads import DownloadManager
from mlx_manager.manager.services import Manager

router = APIRouter(prefix="/api", tags=["ollama"], route_class=UnicodeCheckedRoute)
API = [Depends(require_api_key)]
ADMIN = [Depends(require_admin)]
root_router = APIRouter(tags=["ollama"])
NDJSON = "application/x-ndjson"


def _serving(request: Request) -> OllamaServing:
    serving: OllamaServing = request.app.state.ollama_serving
    return serving


def _ndjson(lines: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(lines, media_type=NDJSON, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _one_line(body: dict[str, object]) -> AsyncIterator[str]:
    yield json.dumps(body) + "\n"


async def _generation(body: ChatRequest | GenerateRequest, request: Request, empty: bool) -> object:
    received = time.perf_counter()
    serving = _serving(request)
    record(request, body.model)
    if empty:  # nothing to answer: load the model, or unload it with keep_alive 0
        reply = await serving.load_or_unload(body, received)
        return _ndjson(_one_line(reply)) if body.stream else reply
    run = await serving.start(body, received)
    record(request, run.model, run.gen.usage, run.gen.backend)
    if body.stream:
        await admitted(run.gen, request.is_disconnected)  # a request refused in the queue is still a 503
        return _ndjson(serving.lines(body, run))
    whole = await serving.whole(body, run, request.is_disconnected)
    return Response(whole.model_dump_json(exclude_none=True), media_type="application/json")


@router.post("/chat", dependencies=API, response_model=None, responses={200: {"model": ChatChunk}})
async def chat(body: ChatRequest, request: Request) -> object:
    """A chat turn: NDJSON chunks by default (`stream: false`: one object); the last has the counters."""
    return await _generation(body, request, not body.messages)


@router.post("/generate", dependencies=API, response_model=None, responses={200: {"model": GenerateChunk}})
async def generate(body: GenerateRequest, request: Request) -> object:
    """A completion of `prompt` (through the chat template, or `raw`, or a simple `template`)."""
    return await _generation(body, request, not body.prompt and not body.images)


@router.post("/embed", dependencies=API)
async def embed(body: EmbedRequest, request: Request) -> EmbedResponse:
    record(request, body.model)
    return await _embed(request, body)


async def _embed(request: Request, body: EmbedRequest) -> EmbedResponse:
    serving = _serving(request)
    starter = serving.starter
    return await within(serving.embed(body, time.perf_counter()), "embeddings", starter.time_limits(), starter.on_limit)


@router.post("/embeddings", dependencies=API)
async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    """The older single-prompt form."""
    record(request, body.model)
    one = EmbedRequest(model=body.model, input=body.prompt, keep_alive=body.keep_alive)
    result = await _embed(request, one)
    return EmbeddingsResponse(embedding=result.embeddings[0])


@router.get("/tags", dependencies=API)
async def tags(request: Request, profiles: ProfilesDep) -> Tags:
    return Tags(models=await catalog.tags(_serving(request), profiles))


@router.post("/show", dependencies=API)
async def show(body: ShowRequest, request: Request) -> Show:
    record(request, body.model)
    return await catalog.show(_serving(request), body.model)


@router.get("/ps", dependencies=API)
async def ps(request: Request) -> Running:
    return Running(models=catalog.running(_serving(request)))


@router.get("/version", dependencies=API)
async def version() -> Version:
    return Version(version=__version__)


@router.post("/pull", dependencies=ADMIN, response_model=None, responses={200: {"model": Progress}})
async def pull(body: PullRequest, request: Request) -> object:
    """A Hugging Face repo id (org/name) downloaded into the cache, with Ollama's progress objects."""
    record(request, body.model)
    downloads: DownloadManager = request.app.state.downloads
    progress = await catalog.pull(downloads, body.model)
    if not body.stream:
        steps = [step async for step in progress]
        return steps[-1]

    async def lines() -> AsyncIterator[str]:
        try:
            async for step in progress:
                yield step.model_dump_json(exclude_none=True) + "\n"
        except APIError as exc:
            yield json.dumps({"error": exc.message}) + "\n"
        except Exception as exc:  # the downloader's own failure: logged, and said in Ollama's shape
            err = stream_failure(exc)
            yield json.dumps({"error": err.message if err else "The pull failed; see the server log."}) + "\n"

    return _ndjson(lines())


@router.delete("/delete", dependencies=ADMIN)
async def delete(body: NamedModel, request: Request) -> Response:
    record(request, body.model)
    manager: Manager = request.app.state.manager
    await catalog.delete(_serving(request), manager, request.app.state.downloads, body.model)
    return Response(status_code=200)


@router.post("/copy", dependencies=ADMIN)
async def copy(body: CopyRequest, request: Request) -> Response:
    record(request, body.source)
    await catalog.copy(_serving(request), request.app.state.manager, body.source, body.destination)
    return Response(status_code=200)


@root_router.head("/", include_in_schema=False)
async def root_head() -> Response:
    return Response(status_code=200)


@root_router.get("/", include_in_schema=False)
async def root(request: Request) -> Response:
    """Browsers get the web UI; Ollama's clients, which probe the root, get Ollama's answer."""
    if "text/html" in request.headers.get("accept", ""):
        return WebUI().respond("GET", "/")
    return PlainTextResponse("Ollama is running")
