"""The audit log: one row of metadata per API request (who, which endpoint and model, status, tokens, latency),
never prompt or response text. Written in batches off the event loop; a failed write is logged, never raised."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, delete, select
from sqlmodel.sql.expression import SelectOfScalar

from mlx_manager.api.ollama.errors import LISTINGS as OLLAMA_LISTINGS
from mlx_manager.api.ollama.errors import is_ollama_path
from mlx_manager.db.models import ApiKey, AuditEntry, User
from mlx_manager.manager import api_keys

log = logging.getLogger(__name__)

# The model-serving APIs; the UI's /api routes, /admin, /health and /metrics are not audited.
AUDITED_PREFIXES = ("/v1/", "/anthropic/", "/rerank")
COLUMNS = (
    "id", "time", "request_id", "user_id", "api_key_id", "method", "endpoint", "model", "status",
    "prompt_tokens", "completion_tokens", "latency_ms", "backend",
)  # fmt: skip
# Who made each entry, by name, next to the ids (a deleted user's and key's names are gone: null).
NAMED_COLUMNS = (*COLUMNS[:4], "username", "api_key_id", "api_key_name", *COLUMNS[5:])
# Model listings (GET /v1/models, /anthropic/v1/models, one model's card): what the web UI asks on every chat
# page, and SDKs before their first request; hidden from the Logs view unless asked for.
LISTING_PATHS = ("/v1/models", "/anthropic/v1/models", *OLLAMA_LISTINGS)
EXPORT_LIMIT = 1_000_000
RETENTION_INTERVAL_SECONDS = 3600.0


def audited(path: str) -> bool:
    return path.startswith(AUDITED_PREFIXES) or is_ollama_path(path)


def entry_from_access(fields: dict[str, Any]) -> AuditEntry:
    """An entry from the access line's fields (AccessMiddleware), which hold no request or response text."""
    return AuditEntry(
        time=float(fields.get("time") or time.time()),
        request_id=str(fields.get("request_id", "")),
        user_id=fields.get("user_id"),
        api_key_id=fields.get("api_key_id"),
        method=str(fields.get("method", "")),
        endpoint=str(fields.get("endpoint") or fields.get("path", "")),
        model=str(fields.get("model", "")),
        status=int(fields.get("status", 0)),
        prompt_tokens=int(fields.get("prompt_tokens", 0)),
        completion_tokens=int(fields.get("completion_tokens", 0)),
        latency_ms=float(fields.get("latency_ms", 0.0)),
        backend=str(fields.get("backend", "local")),
    )


class AuditWriter:
    """Collects entries (and API-key uses) on the event loop; a task writes them in one transaction per batch."""

    def __init__(self, db: Engine, max_pending: int = 10_000) -> None:
        self.db = db
        self.max_pending = max_pending
        self.dropped = 0
        self._entries: list[AuditEntry] = []
        self._keys_used: dict[int, float] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        self._wake = None

    def record_access(self, fields: dict[str, Any]) -> None:
        """The access middleware's hook: keep an entry for an audited request."""
        if audited(str(fields.get("path", ""))):
            self.add(entry_from_access(fields))

    def add(self, entry: AuditEntry) -> None:
        if self._wake is None:
            return  # not running (an app without its lifespan)
        if len(self._entries) >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("Audit log is not keeping up; %d entries dropped", self.dropped)
            return
        self._entries.append(entry)
        self._wake.set()

    def key_used(self, key_id: int, when: float | None = None) -> None:
        if self._wake is None:
            return
        self._keys_used[key_id] = max(when or time.time(), self._keys_used.get(key_id, 0.0))
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        entries, keys = self._entries, self._keys_used
        self._entries, self._keys_used = [], {}
        if not entries and not keys:
            return
        try:
            await asyncio.to_thread(self._write, entries, keys)
        except Exception as exc:  # the requests are long answered; losing their audit rows must not hurt more
            log.warning("Could not write %d audit entries: %s", len(entries), exc)

    def _write(self, entries: list[AuditEntry], keys: dict[int, float]) -> None:
        with Session(self.db) as session:
            session.add_all(entries)
            api_keys.mark_used(session, keys)
            session.commit()


@dataclass(frozen=True)
class AuditFilter:
    user_id: int | None = None
    model: str | None = None
    endpoint: str | None = None
    status: int | None = None
    since: float | None = None
    until: float | None = None
    hide_listings: bool = False

    def apply(self, query: SelectOfScalar[Any]) -> SelectOfScalar[Any]:
        if self.hide_listings:
            listing = col(AuditEntry.endpoint).in_(LISTING_PATHS) | col(AuditEntry.endpoint).startswith("/v1/models/")
            query = query.where(~((col(AuditEntry.method) == "GET") & listing))
        if self.user_id is not None:
            query = query.where(AuditEntry.user_id == self.user_id)
        if self.model is not None:
            query = query.where(AuditEntry.model == self.model)
        if self.endpoint is not None:
            query = query.where(AuditEntry.endpoint == self.endpoint)
        if self.status is not None:
            query = query.where(AuditEntry.status == self.status)
        if self.since is not None:
            query = query.where(col(AuditEntry.time) >= self.since)
        if self.until is not None:
            query = query.where(col(AuditEntry.time) < self.until)
        return query


def search(session: Session, where: AuditFilter, limit: int, offset: int) -> tuple[list[AuditEntry], int]:
    """A page of matching entries, newest first, and how many match in all."""
    total = session.exec(where.apply(select(func.count()).select_from(AuditEntry))).one()
    query = where.apply(select(AuditEntry)).order_by(col(AuditEntry.time).desc(), col(AuditEntry.id).desc())
    return list(session.exec(query.offset(offset).limit(limit)).all()), int(total)


def export_rows(session: Session, where: AuditFilter, limit: int = EXPORT_LIMIT) -> list[AuditEntry]:
    """Matching entries, oldest first."""
    query = where.apply(select(AuditEntry)).order_by(col(AuditEntry.time), col(AuditEntry.id))
    return list(session.exec(query.limit(limit)).all())


def names(session: Session, entries: Sequence[AuditEntry]) -> tuple[dict[int, str], dict[int, str]]:
    """The usernames and key names the entries refer to, by id (those still there)."""
    user_ids = {e.user_id for e in entries if e.user_id is not None}
    key_ids = {e.api_key_id for e in entries if e.api_key_id is not None}
    users = session.exec(select(User.id, User.username).where(col(User.id).in_(user_ids))).all() if user_ids else []
    keys = session.exec(select(ApiKey.id, ApiKey.name).where(col(ApiKey.id).in_(key_ids))).all() if key_ids else []
    return {i: n for i, n in users if i is not None}, {i: n for i, n in keys if i is not None}


def as_dicts(session: Session, entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    """The entries with the names of their user and key."""
    users, keys = names(session, entries)
    rows = []
    for e in entries:
        row: dict[str, Any] = {c: getattr(e, c) for c in COLUMNS}
        row["username"] = users.get(e.user_id) if e.user_id is not None else None
        row["api_key_name"] = keys.get(e.api_key_id) if e.api_key_id is not None else None
        rows.append(row)
    return rows


def iso_time(epoch: float) -> str:
    """ISO 8601 in UTC with milliseconds, as spreadsheets and log tools read it."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_csv(session: Session, entries: Sequence[AuditEntry]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=NAMED_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "time": iso_time(row["time"])} for row in as_dicts(session, entries))
    return out.getvalue()


def prune(db: Engine, retention_days: int, now: float | None = None) -> int:
    """Delete entries older than the retention (0 keeps everything); returns how many went."""
    if retention_days <= 0:
        return 0
    cutoff = (now if now is not None else time.time()) - retention_days * 86400
    with Session(db) as session:
        result = session.exec(delete(AuditEntry).where(col(AuditEntry.time) < cutoff))
        session.commit()
        removed = int(result.rowcount or 0)
    if removed:
        log.info("Pruned %d audit entries older than %d days", removed, retention_days)
    return removed


async def run_retention(db: Engine, retention_days: Callable[[], int], interval: float) -> None:
    """Prune now and then every `interval` seconds, with the retention in force at that moment."""
    while True:
        try:
            await asyncio.to_thread(prune, db, retention_days())
        except Exception as exc:
            log.warning("Could not prune the audit log: %s", exc)
        await asyncio.sleep(interval)
