"""Hugging Face search, model details, and deleting a downloaded model (thin: the work is in manager/hub.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from mlx_manager.api.deps import EngineDep
from mlx_manager.api.manager.hub_schemas import HubModelDetails, HubSearch, LocalModelDeleted
from mlx_manager.engine.engine import Engine
from mlx_manager.manager.downloads import DownloadManager
from mlx_manager.manager.hub import MemoryRoom, check_repo_id
from mlx_manager.manager.hub_errors import HubError, hub_unreachable

# A search the hub has not answered by then fails, so an offline machine hears so at once instead of after DNS retries.
SEARCH_TIMEOUT_SECONDS = 8.0

router = APIRouter(prefix="/api/hub", tags=["hub"])


def get_downloads(request: Request) -> DownloadManager:
    downloads: DownloadManager = request.app.state.downloads
    return downloads


DownloadsDep = Annotated[DownloadManager, Depends(get_downloads)]


def memory_room(engine: Engine) -> MemoryRoom:
    """The pool's budget, and free memory plus what idle models would give back if unloaded."""
    cfg = engine.pool.config
    idle = sum(e.memory_bytes for e in engine.pool.entries() if e.active == 0 and not e.pinned)
    return MemoryRoom(cfg.memory_budget_bytes, max(cfg.free_memory() - cfg.reserve_bytes + idle, 0))


@router.get("/search")
async def search(
    downloads: DownloadsDep,
    engine: EngineDep,
    q: Annotated[str | None, Query(max_length=200, description="Words in the repository id.")] = None,
    author: Annotated[str, Query(max_length=96, description="Owner; empty for everyone.")] = "mlx-community",
    sort: Literal["downloads", "likes", "last_modified", "trending"] = "downloads",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> HubSearch:
    room = memory_room(engine)
    try:
        found = await asyncio.wait_for(
            asyncio.to_thread(downloads.hub.search, q, author, sort, limit, room), SEARCH_TIMEOUT_SECONDS
        )
    except TimeoutError:
        raise hub_unreachable(downloads.hub.endpoint, f"no answer within {SEARCH_TIMEOUT_SECONDS:g} s") from None
    return HubSearch.model_validate(
        {"data": found, "memory_budget_bytes": room.budget_bytes, "available_memory_bytes": room.available_bytes}
    )


@router.get("/models/{repo_id:path}")
async def model_details(
    repo_id: str,
    downloads: DownloadsDep,
    engine: EngineDep,
    revision: Annotated[str | None, Query(max_length=200)] = None,
) -> HubModelDetails:
    check_repo_id(repo_id)
    details = await asyncio.to_thread(downloads.hub.details, repo_id, revision, memory_room(engine))
    return HubModelDetails.model_validate(details)


@router.delete("/local/{repo_id:path}")
async def delete_local_model(repo_id: str, downloads: DownloadsDep, engine: EngineDep) -> LocalModelDeleted:
    """Remove a model from the Hugging Face cache (unloading it first); refused while it is being downloaded."""
    check_repo_id(repo_id)
    await engine.pool.unload(repo_id)
    freed = await downloads.delete_local(repo_id)
    if freed is None:
        raise HubError(404, "local_model_not_found", f"'{repo_id}' is not in the Hugging Face cache.")
    await engine.rescan_models()
    return LocalModelDeleted(repo_id=repo_id, freed_bytes=freed)
