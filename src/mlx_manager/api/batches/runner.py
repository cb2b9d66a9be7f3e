"""Batch jobs in the background: each batch's lines go through the normal request path (api/request: the servings'
start and reply, so batching, the prefix cache and grammars apply) at the lowest priority. A result is appended to
the batch's output or error file before the next counts; after a restart the lines already answered (by custom_id)
are skipped, so none is answered twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mlx_manager.db.models import Batch
from mlx_manager.manager.batch_store import BatchStore

log = logging.getLogger(__name__)

# Run one line: (endpoint, body, owner) -> (HTTP status, reply body in the endpoint's own shape).
Dispatch = Callable[[str, dict[str, Any], str | None], Awaitable[tuple[int, dict[str, Any]]]]
MAX_LINES = 50_000
PARALLEL = 8  # lines of one batch in flight at once: the scheduler batches them


def validate(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The input file's requests, and the errors that fail the batch (OpenAI's `errors.data` items)."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            errors.append({"code": "invalid_json_line", "message": "This line is not valid JSON.", "line": number})
            continue
        problem = _line_problem(item, endpoint, seen)
        if problem is not None:
            errors.append({"code": problem[0], "message": problem[1], "line": number, "param": problem[2]})
            continue
        seen.add(item["custom_id"])
        lines.append(item)
    if not lines and not errors:
        errors.append({"code": "empty_file", "message": "The input file has no requests.", "line": None})
    if len(lines) > MAX_LINES:
        errors.append({"code": "too_many_requests", "message": f"At most {MAX_LINES} requests.", "line": None})
    return lines, errors


def _line_problem(item: Any, endpoint: str, seen: set[str]) -> tuple[str, str, str | None] | None:
    if not isinstance(item, dict):
        return "invalid_request", "Each line must be a JSON object.", None
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "Each request needs a custom_id (a string).", "custom_id"
    if custom_id in seen:
        return "duplicate_custom_id", f"The custom_id '{custom_id[:100]}' is used twice.", "custom_id"
    if item.get("method") != "POST":
        return "invalid_method", "The method must be POST.", "method"
    if item.get("url") != endpoint:
        return "mismatched_endpoint", f"The url must be the batch's endpoint, {endpoint}.", "url"
    if not isinstance(item.get("body"), dict):
        return "invalid_request", "The body must be a JSON object.", "body"
    return None


def _answered(path: Path) -> set[str]:
    """custom_ids with a complete result line; a torn last line (a crash mid-write) is cut off."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as out:
            out.truncate(end)
    return {json.loads(line)["custom_id"] for line in data[:end].splitlines() if line.strip()}


class BatchRunner:
    def __init__(self, store: BatchStore, dispatch: Dispatch, stopping: Callable[[], bool] = lambda: False) -> None:
        """`stopping`: the server is shutting down; lines in flight are dropped (run again after the restart),
        so the drain does not wait for a whole batch or cut its replies short."""
        self.store = store
        self.dispatch = dispatch
        self.stopping = stopping
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # updates commit in the order they were made
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            if self.stopping():
                await asyncio.sleep(0.5)
                continue
            for batch_id in await asyncio.to_thread(self.store.active):
                try:
                    await self._run(batch_id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("Batch %s failed", batch_id)
                    await self._update(batch_id, status="failed", failed_at=int(time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 2.0)

    async def _update(self, batch_id: str, **changes: Any) -> Batch:
        async with self._lock:
            return await asyncio.to_thread(self.store.update_batch, batch_id, **changes)

    async def _batch(self, batch_id: str) -> Batch:
        batch = await asyncio.to_thread(self.store.get_batch, batch_id, any_owner=True)
        assert batch is not None
        return batch

    async def _run(self, batch_id: str) -> None:
        batch = await self._batch(batch_id)
        data = await asyncio.to_thread(self.store.path(batch.input_file_id).read_bytes)
        lines, errors = validate(data, batch.endpoint)
        if batch.status == "validating":
            if errors:
                log.info("Batch %s failed validation: %d problems", batch_id, len(errors))
                await self._update(
                    batch_id, status="failed", failed_at=int(time.time()), errors={"object": "list", "data": errors}
                )
                return
            batch = await self._update(
                batch_id, status="in_progress", in_progress_at=int(time.time()), request_total=len(lines)
            )
        work = await asyncio.to_thread(self.store.work_dir, batch_id)
        output, failed = work / "output.jsonl", work / "errors.jsonl"
        ok, bad = await asyncio.to_thread(lambda: (_answered(output), _answered(failed)))
        if batch.status == "in_progress":
            todo = [item for item in lines if item["custom_id"] not in ok | bad]
            counts = {"request_completed": len(ok), "request_failed": len(bad)}
            if not await self._lines(batch, todo, output, failed, counts):
                return
        await self._finish(batch_id, output, failed)

    async def _lines(
        self, batch: Batch, todo: list[dict[str, Any]], output: Path, failed: Path, counts: dict[str, int]
    ) -> bool:
        """`counts`: the results already in the files (after a restart), counted on from there. False: stopped
        for a shutdown."""
        if todo:
            log.info("Batch %s: %d of %d requests to run", batch.id, len(todo), batch.request_total)
        await self._update(batch.id, **counts)
        queue = iter(todo)

        async def worker() -> None:
            for item in queue:
                now = await self._batch(batch.id)
                if self.stopping() or now.status != "in_progress" or _expired(now):
                    return  # cancelled or expired: what is answered stays, the rest is not run
                status, body = await self.dispatch(batch.endpoint, item["body"], batch.owner)
                record = {
                    "id": f"batch_req_{uuid.uuid4().hex}",
                    "custom_id": item["custom_id"],
                    "response": {"status_code": status, "request_id": f"req-{uuid.uuid4().hex}", "body": body},
                    "error": None,
                }
                target = output if status == 200 else failed
                await asyncio.to_thread(_append, target, record)
                key = "request_completed" if status == 200 else "request_failed"
                counts[key] += 1
                await self._update(batch.id, **{key: counts[key]})

        work = asyncio.gather(*(worker() for _ in range(PARALLEL)))
        while not work.done():
            await asyncio.wait({work}, timeout=0.1)
            if self.stopping() and not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                log.info("Batch %s paused for the shutdown; it resumes at the next start", batch.id)
                return False
        work.result()
        return True

    async def _finish(self, batch_id: str, output: Path, failed: Path) -> None:
        batch = await self._batch(batch_id)
        ok, bad = await asyncio.to_thread(lambda: (_answered(output), _answered(failed)))
        cancelled = batch.status == "cancelling"
        expired = not cancelled and _expired(batch) and len(ok) + len(bad) < batch.request_total
        if not (cancelled or expired):
            batch = await self._update(batch_id, status="finalizing", finalizing_at=int(time.time()))
        changes: dict[str, Any] = {"request_completed": len(ok), "request_failed": len(bad)}
        for path, key in ((output, "output_file_id"), (failed, "error_file_id")):
            if path.exists() and path.stat().st_size and getattr(batch, key) is None:
                name = f"{batch_id}_{'output' if key == 'output_file_id' else 'error'}.jsonl"
                row = await asyncio.to_thread(self.store.adopt_file, batch.owner, name, "batch_output", path)
                changes[key] = row.id
        now = int(time.time())
        if cancelled:
            changes |= {"status": "cancelled", "cancelled_at": now}
        elif expired:  # the completion window ran out (expired_at is then its end, expires_at)
            changes |= {"status": "expired"}
        else:
            changes |= {"status": "completed", "completed_at": now}
        await self._update(batch_id, **changes)
        log.info("Batch %s %s", batch_id, changes["status"])


def _expired(batch: Batch) -> bool:
    return batch.expires_at is not None and time.time() > batch.expires_at


def _append(path: Path, record: dict[str, Any]) -> None:
    """One result line, flushed to disk before the batch counts it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
