"""Thin Anthropic routes: /v1/messages (also under /anthropic), count_tokens, and the Anthropic model list."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse

from mlx_manager.api.access import record
from mlx_manager.api.anthropic.schemas import (
    CountTokensRequest,
    Message,
    MessagesRequest,
    ModelInfo,
    ModelList,
    TokenCount,
)
from mlx_manager.api.anthropic.serving import AnthropicServing
from mlx_manager.api.deps import EngineDep, ProfilesDep
from mlx_manager.api.errors import APIError
from mlx_manager.api.request.answer import answer
from mlx_manager.api.unicode_check import UnicodeCheckedRoute
from mlx_manager.engine.errors import ModelNotFoundError
from mlx_manager.engine.types import ModelInfo as EngineModel

router = APIRouter(tags=["anthropic"], route_class=UnicodeCheckedRoute)


def _serving(request: Request) -> AnthropicServing:
    serving: AnthropicServing = request.app.state.anthropic_serving
    return serving


async def create_message(body: MessagesRequest, request: Request) -> Message | EventSourceResponse:
    serving = _serving(request)
    start, events, reply = serving.start(body), partial(serving.stream, body), partial(serving.message, body)
    return await answer(request, body.model, start, body.stream, events, reply)


async def count_tokens(body: CountTokensRequest, request: Request) -> TokenCount:
    record(request, body.model)
    return await _serving(request).count_tokens(body)


def model_info(info: EngineModel) -> ModelInfo:
    return ModelInfo(id=info.id, display_name=info.id, created_at=_created(info.created))


def _created(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


async def list_models(engine: EngineDep, profiles: ProfilesDep) -> ModelList:
    """The models, then the profiles (usable as models too)."""
    data = [model_info(m) for m in sorted(await engine.list_models(), key=lambda m: m.id)]
    data += [ModelInfo(id=p.name, display_name=p.name, created_at=_created(p.created)) for p in profiles]
    return ModelList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None)


async def get_model(model_id: str, engine: EngineDep, profiles: ProfilesDep) -> ModelInfo:
    profile = next((p for p in profiles if p.name == model_id), None)
    if profile is not None:
        return ModelInfo(id=profile.name, display_name=profile.name, created_at=_created(profile.created))
    try:
        return model_info(await engine.resolve(model_id))
    except ModelNotFoundError as exc:
        raise APIError(404, f"model: {model_id}", param="model") from exc


# The reply is documented in the OpenAPI; with stream: true it comes as server-sent events instead.
_MESSAGE: dict[int | str, dict[str, Any]] = {200: {"model": Message}}
for prefix in ("", "/anthropic"):
    router.add_api_route(
        f"{prefix}/v1/messages", create_message, methods=["POST"], response_model=None, responses=_MESSAGE
    )
    router.add_api_route(f"{prefix}/v1/messages/count_tokens", count_tokens, methods=["POST"])
router.add_api_route("/anthropic/v1/models", list_models, methods=["GET"])
router.add_api_route("/anthropic/v1/models/{model_id:path}", get_model, methods=["GET"])
