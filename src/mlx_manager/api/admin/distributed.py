"""Admin routes for distributed models: their ranks' state and memory, and a restart that needs no server restart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mlx_manager.api.admin.schemas import DistributedOut, LoadedModelOut, RankOut
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


def loaded_rows(models: DistributedModels) -> list[LoadedModelOut]:
    """Started distributed models as rows of /admin/models, beside the pool's: state, memory per rank, ranks."""
    rows = []
    for status in models.status():
        group = models.groups.get(status["id"])
        lm = models.models.get(status["id"])
        if group is None or lm is None:
            continue
        hosts = status["hosts"]
        ranks = [
            RankOut(
                rank=r["rank"],
                host=hosts[r["rank"]]["ssh"],
                weight_bytes=r["weight_bytes"],
                active_bytes=r["active_bytes"],
            )
            for r in status["ranks"]
        ]
        rows.append(
            LoadedModelOut(
                id=status["id"],
                path=lm.info.path,
                family=lm.info.family,
                memory_bytes=sum(r.active_bytes for r in ranks),
                pinned=True,  # the pool never evicts it: its ranks run until unloaded
                active_requests=status["running"] + status["waiting"],
                loaded_at=group.started_at,
                load_seconds=group.load_seconds,
                idle_seconds=0.0,
                state="loaded" if status["state"] == "ready" else "unavailable",
                requests_done=status["served"],
                requests_cancelled=status["cancelled"],
                tokens_generated=models.tokens[status["id"]],
                running=status["running"],
                waiting=status["waiting"],
                distributed=DistributedOut(
                    strategy=status["strategy"], backend=status["backend"], ranks=ranks, error=status["error"]
                ),
            )
        )
    return rows


async def load(models: DistributedModels, model_id: str) -> LoadedModelOut:
    """POST /admin/models/{id}/load for a distributed model: start its ranks (a 503 naming the rank if not)."""
    try:
        await models.group(model_id)
    except EngineError as exc:
        raise APIError(503, exc.message, type="server_error", code="model_unavailable") from exc
    return next(r for r in loaded_rows(models) if r.id == model_id)


async def unload(models: DistributedModels, model_id: str) -> dict[str, str]:
    """POST /admin/models/{id}/unload for a distributed model: stop its ranks once no request uses them."""
    if model_id not in models.groups:
        raise APIError(404, f"The model '{model_id}' is not loaded.", param="model", code="model_not_loaded")
    if not await models.unload(model_id):
        raise APIError(409, f"'{model_id}' is serving requests; unload it when they are done.", param="model")
    return {"id": model_id, "status": "unloaded"}
