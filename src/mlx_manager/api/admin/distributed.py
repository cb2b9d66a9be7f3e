"""Admin routes for distributed models: their ranks' state and memory, and a restart that needs no server restart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mlx_manager.api.errors import APIError
from mlx_manager.engine.distributed.backend import DistributedModels
from mlx_manager.engine.errors import EngineError

router = APIRouter(prefix="/admin/distributed", tags=["admin"])


def _models(request: Request) -> DistributedModels:
    models: DistributedModels = request.app.state.distributed
    return models


@router.get("")
async def list_distributed(request: Request) -> dict[str, Any]:
    return {"data": _models(request).status()}


@router.post("/{model_id:path}/restart")
async def restart_distributed(model_id: str, request: Request) -> dict[str, Any]:
    """Stop the model's ranks (if any run) and start them again; answers once every rank has loaded."""
    models = _models(request)
    if model_id not in models.specs:
        raise APIError(404, f"No distributed model '{model_id}' is configured.", param="model_id")
    try:
        await models.restart(model_id)
    except EngineError as exc:
        raise APIError(503, exc.message, type="server_error", code="model_unavailable") from exc
    return next(s for s in models.status() if s["id"] == model_id)
