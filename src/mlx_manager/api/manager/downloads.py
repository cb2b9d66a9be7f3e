"""Downloads of hub repositories: start, list, watch (SSE), pause, resume, cancel, delete (thin: the state machine
is in manager/downloads.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response
from sse_starlette import EventSourceResponse

from mlx_manager.api.manager.hub import DownloadsDep
from mlx_manager.api.manager.hub_schemas import DownloadList, DownloadOut, DownloadRequest
from mlx_manager.manager.downloads_state import TERMINAL

router = APIRouter(prefix="/api/downloads", tags=["downloads"])


@router.post("", status_code=201)
async def start_download(body: DownloadRequest, downloads: DownloadsDep) -> DownloadOut:
    """Checks the repository and the free disk space (507 when it would not fit), then downloads in the background
    into the Hugging Face cache. A model already in the cache answers `completed` at once."""
    job = await downloads.create(body.repo_id, body.revision, body.allow_patterns)
    return DownloadOut.model_validate(job.snapshot())


@router.get("")
async def list_downloads(downloads: DownloadsDep) -> DownloadList:
    return DownloadList.model_validate({"data": downloads.list_all()})


@router.get("/{download_id}")
async def get_download(download_id: str, downloads: DownloadsDep) -> DownloadOut:
    return DownloadOut.model_validate(downloads.get(download_id))


@router.get("/{download_id}/events", response_class=EventSourceResponse)
async def download_events(download_id: str, downloads: DownloadsDep) -> EventSourceResponse:
    """Server-sent events: `progress` with the download (bytes, speed, ETA, per file) as it moves, then one event
    named after the final status (`completed`, `failed`, `cancelled`), after which the stream ends."""
    snapshots = downloads.watch(download_id)
    first = await anext(snapshots)  # an unknown id is a 404 before the stream starts

    async def events() -> AsyncIterator[dict[str, Any]]:
        snap = first
        while True:
            yield {"event": snap["status"] if snap["status"] in TERMINAL else "progress", "data": json.dumps(snap)}
            try:
                snap = await anext(snapshots)
            except StopAsyncIteration:
                return

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventSourceResponse(events(), sep="\n", ping=15, headers=headers)


@router.post("/{download_id}/pause")
async def pause_download(download_id: str, downloads: DownloadsDep) -> DownloadOut:
    """Stops the transfer; the partial file stays in the cache, and resume continues it with a Range request."""
    return DownloadOut.model_validate((await downloads.pause(download_id)).snapshot())


@router.post("/{download_id}/resume")
async def resume_download(download_id: str, downloads: DownloadsDep) -> DownloadOut:
    """Continues a paused download, or retries a failed one, from the bytes already on disk."""
    return DownloadOut.model_validate((await downloads.resume(download_id)).snapshot())


@router.post("/{download_id}/cancel")
async def cancel_download(download_id: str, downloads: DownloadsDep) -> DownloadOut:
    """Stops the transfer and removes its partial files."""
    return DownloadOut.model_validate((await downloads.cancel(download_id)).snapshot())


@router.delete("/{download_id}", status_code=204)
async def delete_download(download_id: str, downloads: DownloadsDep) -> Response:
    """Forgets the download (cancelling it first when unfinished); a completed model stays in the cache."""
    await downloads.delete(download_id)
    return Response(status_code=204)
