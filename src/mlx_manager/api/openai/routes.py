"""Thin OpenAI routes: validate, hand to serving, pick JSON or SSE."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from mlx_manager.api.access import record
from mlx_manager.api.anthropic.routes import list_models as anthropic_models
from mlx_manager.api.anthropic.schemas import ModelList as AnthropicModelList
from mlx_manager.api.deps import BackendDep, EngineDep, ProfilesDep
from mlx_manager.api.errors import APIError
from mlx_manager.api.model_cards import is_loaded, sampling_defaults
from mlx_manager.api.openai.embedding_schemas import EmbeddingList, EmbeddingRequest
from mlx_manager.api.openai.embedding_serving import create_embeddings
from mlx_manager.api.openai.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    DistributedCard,
    ModelCard,
    ModelList,
)
from mlx_manager.api.openai.serving import OpenAIServing
from mlx_manager.api.request.answer import answer
from mlx_manager.api.request.limits import within
from mlx_manager.api.unicode_check import UnicodeCheckedRoute
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.errors import ModelNotFoundError
from mlx_manager.engine.types import ModelInfo
from mlx_manager.manager.profiles import ProfileDefaults

router = APIRouter(prefix="/v1", tags=["openai"], route_class=UnicodeCheckedRoute)


def _serving(request: Request) -> OpenAIServing:
    serving: OpenAIServing = request.app.state.openai_serving
    return serving


@router.post("/chat/completions", response_model=None, responses={200: {"model": ChatCompletion}})
async def chat_completions(body: ChatCompletionRequest, request: Request) -> ChatCompletion | EventSourceResponse:
    serving = _serving(request)
    start, events, reply = serving.start_chat(body), partial(serving.chat_stream, body), partial(serving.chat, body)
    return await answer(request, body.model, start, body.stream, events, reply)


@router.post("/completions", response_model=None, responses={200: {"model": Completion}})
async def completions(body: CompletionRequest, request: Request) -> Completion | EventSourceResponse:
    serving = _serving(request)
    start = serving.start_completion(body)
    events, reply = partial(serving.completion_stream, body), partial(serving.completion, body)
    return await answer(request, body.model, start, body.stream, events, reply)


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, engine: EngineDep, backend: BackendDep, request: Request) -> EmbeddingList:
    record(request, body.model)
    starter = _serving(request).starter
    work = create_embeddings(engine, body, backend)
    return await within(work, "embeddings", starter.time_limits(), starter.on_limit)


@router.get("/models", response_model=None)
async def list_models(engine: EngineDep, profiles: ProfilesDep, request: Request) -> ModelList | AnthropicModelList:
    """The models, then the profiles (usable as models too; owned_by "profile")."""
    if "anthropic-version" in request.headers:  # the Anthropic SDK's models.list() asks here too
        return await anthropic_models(engine, profiles)
    models = {m.id: m for m in await engine.list_models()}
    cards = [_card(engine, info, request) for _, info in sorted(models.items())]
    cards += [_profile_card(engine, p, models.get(p.model)) for p in profiles]
    return ModelList(data=cards)


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, engine: EngineDep, profiles: ProfilesDep, request: Request) -> ModelCard:
    profile = next((p for p in profiles if p.name == model_id), None)
    if profile is not None:
        models = {m.id: m for m in await engine.list_models()}
        return _profile_card(engine, profile, models.get(profile.model))
    try:
        info = await engine.resolve(model_id)
    except ModelNotFoundError as exc:
        raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found") from exc
    return _card(engine, info, request)


def _card(engine: Engine, info: ModelInfo, request: Request) -> ModelCard:
    spec = request.app.state.distributed.card(info.id)
    return ModelCard(
        id=info.id,
        created=info.created,
        context_length=info.context_length,
        max_model_len=info.context_length,
        loaded=is_loaded(engine, info.id),
        sampling_defaults=sampling_defaults(engine, info) if info.task == "generate" else {},
        vision=info.vision,
        task=info.task,
        distributed=DistributedCard(**spec) if spec is not None else None,
    )


def _profile_card(engine: Engine, profile: ProfileDefaults, info: ModelInfo | None) -> ModelCard:
    """A profile is described by its model (None: one only a routing rule knows), capped by its own values."""
    limits = [n for n in (profile.context_length, info.context_length if info else None) if n]
    return ModelCard(
        id=profile.name,
        created=profile.created,
        owned_by="profile",
        context_length=min(limits) if limits else None,
        max_model_len=min(limits) if limits else None,
        loaded=info is not None and is_loaded(engine, info.id),
        sampling_defaults=sampling_defaults(engine, info, profile),
        vision=info is not None and info.vision,
    )
