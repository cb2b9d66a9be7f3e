"""OpenAI's Files and Batch APIs: upload a JSONL of requests, run it as a batch in the background, read the output
and error files. Everything belongs to the caller that made it: anyone else gets a 404."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from mlx_manager.api.batches.dispatch import ENDPOINTS
from mlx_manager.api.batches.runner import BatchRunner
from mlx_manager.api.errors import APIError
from mlx_manager.api.schema_base import Strict
from mlx_manager.db.models import Batch, BatchFile
from mlx_manager.manager.batch_store import BatchStore

router = APIRouter(prefix="/v1", tags=["batches"])
Endpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
assert set(ENDPOINTS) == set(Endpoint.__args__)  # type: ignore[attr-defined]
Row = TypeVar("Row")
Item = TypeVar("Item")


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"


# OpenAI's list of files or batches, a page at a time (`after` the last id).
class Page(BaseModel, Generic[Item]):
    object: Literal["list"] = "list"
    data: list[Item]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileList(Page[FileObject]):
    pass


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class BatchCreate(Strict):
    input_file_id: str = Field(min_length=1, max_length=200)
    endpoint: Endpoint
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: dict[str, Any] | None
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None = None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, Any] | None


class BatchList(Page[BatchObject]):
    pass


def _store(request: Request) -> BatchStore:
    store: BatchStore = request.app.state.batch_store
    return store


def _owner(request: Request) -> str | None:
    """The credential's owner (a user's uid, "server" for the server key), or None (anonymous, open mode)."""
    principal = getattr(request.state, "principal", None)
    return principal.owner if principal is not None else None


def _file(row: BatchFile) -> FileObject:
    return FileObject(id=row.id, bytes=row.bytes, created_at=row.created_at, filename=row.filename, purpose=row.purpose)


def _batch(row: Batch) -> BatchObject:
    fields = row.model_dump(exclude={"owner", "batch_metadata", "request_total", "request_completed", "request_failed"})
    counts = RequestCounts(total=row.request_total, completed=row.request_completed, failed=row.request_failed)
    expired_at = row.expires_at if row.status == "expired" else None
    return BatchObject(**fields, request_counts=counts, metadata=row.batch_metadata, expired_at=expired_at)


async def _owned(
    request: Request, fetch: Callable[[str, str | None], Row | None], kind: str, ident: str, param: str = ""
) -> Row:
    """The caller's row `ident`, read off the event loop, or the 404 that names it (someone else's row does not
    exist for this caller)."""
    row = await asyncio.to_thread(fetch, ident, _owner(request))
    if row is None:
        raise APIError(404, f"No {kind} with id '{ident[:200]}' found.", param=param or f"{kind}_id", code="not_found")
    return row


async def _page(
    request: Request, fetch: Callable[..., list[Row]], convert: Callable[[Row], Any], limit: int, after: str | None
) -> dict[str, Any]:
    """A list's fields: the caller's rows after `after`, read off the event loop; the store gives one more than
    `limit` when there are more."""
    rows = await asyncio.to_thread(fetch, _owner(request), limit, after)
    data = [convert(r) for r in rows[:limit]]
    first, last = (data[0].id, data[-1].id) if data else (None, None)
    return {"data": data, "first_id": first, "last_id": last, "has_more": len(rows) > limit}


# --- files --------------------------------------------------------------------------------------


@router.post("/files")
async def create_file(request: Request, file: UploadFile = File(...), purpose: str = Form(...)) -> FileObject:
    """purpose "batch": a JSONL file of requests, at most max_request_bytes."""
    if purpose != "batch":
        raise APIError(400, f"purpose must be 'batch', not '{purpose[:50]}'.", param="purpose")
    limit = request.app.state.settings.max_request_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise APIError(413, f"The file is larger than {limit} bytes (max_request_bytes).", param="file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(400, "The file must be UTF-8 JSONL text.", param="file") from exc
    name = (file.filename or "upload.jsonl")[:255]
    row = await asyncio.to_thread(_store(request).create_file, _owner(request), name, purpose, data)
    return _file(row)


@router.get("/files")
async def list_files(
    request: Request,
    purpose: str | None = None,
    limit: int = Query(default=100, ge=1, le=10_000),
    after: str | None = None,
) -> FileList:
    store = _store(request)
    files = lambda owner, limit, after: store.list_files(owner, purpose, limit, after)  # noqa: E731
    return FileList(**await _page(request, files, _file, limit, after))


@router.get("/files/{file_id}")
async def get_file(file_id: str, request: Request) -> FileObject:
    return _file(await _owned(request, _store(request).get_file, "file", file_id))


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, request: Request) -> FileDeleted:
    store = _store(request)
    await _owned(request, lambda ident, owner: store.delete_file(ident, owner) or None, "file", file_id)
    return FileDeleted(id=file_id)


@router.get("/files/{file_id}/content", response_class=FileResponse)
async def file_content(file_id: str, request: Request) -> FileResponse:
    store = _store(request)
    row = await _owned(request, store.get_file, "file", file_id)
    return FileResponse(store.path(row.id), media_type="application/jsonl", filename=row.filename)


# --- batches ------------------------------------------------------------------------------------


@router.post("/batches")
async def create_batch(body: BatchCreate, request: Request) -> BatchObject:
    store, owner = _store(request), _owner(request)
    source = await _owned(request, store.get_file, "file", body.input_file_id, "input_file_id")
    if source.purpose != "batch":
        raise APIError(400, "The input file's purpose must be 'batch'.", param="input_file_id")
    now = int(time.time())
    row = Batch(
        id=f"batch_{secrets.token_hex(12)}",
        owner=owner,
        endpoint=body.endpoint,
        input_file_id=source.id,
        completion_window=body.completion_window,
        status="validating",
        batch_metadata=body.metadata,
        created_at=now,
        expires_at=now + 24 * 3600,
    )
    row = await asyncio.to_thread(store.create_batch, row)
    runner: BatchRunner = request.app.state.batch_runner
    runner.wake()
    return _batch(row)


@router.get("/batches")
async def list_batches(
    request: Request, limit: int = Query(default=20, ge=1, le=100), after: str | None = None
) -> BatchList:
    return BatchList(**await _page(request, _store(request).list_batches, _batch, limit, after))


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str, request: Request) -> BatchObject:
    return _batch(await _owned(request, _store(request).get_batch, "batch", batch_id))


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request) -> BatchObject:
    row = await _owned(request, _store(request).cancel, "batch", batch_id)
    runner: BatchRunner = request.app.state.batch_runner
    runner.wake()
    return _batch(row)
