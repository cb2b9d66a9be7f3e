"""Files and batches of the OpenAI Files and Batch APIs: rows in SQLite, bytes under the data dir's files/ folder
(0700, each file 0600). Blocking calls: run them off the event loop."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from mlx_manager.db.models import Batch, BatchFile
from mlx_manager.manager.rows import save

# A batch still has work to do in these states: the runner picks them up, after a restart too.
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


class BatchStore:
    def __init__(self, db: Engine, root: Path) -> None:
        self.db = db
        self.root = root  # the data dir: files/ holds the files, batches/ each running batch's results

    @property
    def files_dir(self) -> Path:
        return _private_dir(self.root / "files")

    def work_dir(self, batch_id: str) -> Path:
        """Where a running batch appends its results (output.jsonl, errors.jsonl) until it is finalized."""
        return _private_dir(_private_dir(self.root / "batches") / batch_id)

    def path(self, file_id: str) -> Path:
        return self.files_dir / file_id

    # --- files ----------------------------------------------------------------------------------

    def create_file(self, owner: str | None, filename: str, purpose: str, data: bytes) -> BatchFile:
        row = _new_file(owner, filename, purpose, len(data))
        fd = os.open(self.path(row.id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return self._add(row)

    def adopt_file(self, owner: str | None, filename: str, purpose: str, source: Path) -> BatchFile:
        """A batch's finished results become a file of its owner (moved, not copied)."""
        row = _new_file(owner, filename, purpose, source.stat().st_size)
        source.chmod(0o600)
        source.replace(self.path(row.id))
        return self._add(row)

    def _add(self, row: BatchFile) -> BatchFile:
        with Session(self.db) as session:
            return save(session, row)

    def get_file(self, file_id: str, owner: str | None) -> BatchFile | None:
        """None for a file of someone else: it does not exist for this caller."""
        with Session(self.db) as session:
            row = session.get(BatchFile, file_id)
        return row if row is not None and row.owner == owner else None

    def list_files(self, owner: str | None, purpose: str | None, limit: int, after: str | None) -> list[BatchFile]:
        with Session(self.db) as session:
            query = select(BatchFile).where(BatchFile.owner == owner)
            if purpose:
                query = query.where(BatchFile.purpose == purpose)
            rows = list(session.exec(query.order_by(col(BatchFile.created_at).desc(), col(BatchFile.id).desc())))
        return _page(rows, limit, after)

    def delete_file(self, file_id: str, owner: str | None) -> bool:
        with Session(self.db) as session:
            row = session.get(BatchFile, file_id)
            if row is None or row.owner != owner:
                return False
            session.delete(row)
            session.commit()
        self.path(file_id).unlink(missing_ok=True)
        return True

    # --- batches --------------------------------------------------------------------------------

    def create_batch(self, batch: Batch) -> Batch:
        with Session(self.db) as session:
            return save(session, batch)

    def get_batch(self, batch_id: str, owner: str | None = None, any_owner: bool = False) -> Batch | None:
        with Session(self.db) as session:
            row = session.get(Batch, batch_id)
        return row if row is not None and (any_owner or row.owner == owner) else None

    def list_batches(self, owner: str | None, limit: int, after: str | None) -> list[Batch]:
        with Session(self.db) as session:
            query = select(Batch).where(Batch.owner == owner)
            rows = list(session.exec(query.order_by(col(Batch.created_at).desc(), col(Batch.id).desc())))
        return _page(rows, limit, after)

    def update_batch(self, batch_id: str, **changes: Any) -> Batch:
        with Session(self.db) as session:
            row = session.get(Batch, batch_id)
            assert row is not None
            return save(session, row, **changes)

    def cancel(self, batch_id: str, owner: str | None) -> Batch | None:
        """Mark a batch cancelling (the runner stops it and finalizes what it has); a finished one stays as is."""
        with Session(self.db) as session:
            row = session.get(Batch, batch_id)
            if row is None or row.owner != owner:
                return None
            if row.status in ("validating", "in_progress"):
                save(session, row, status="cancelling", cancelling_at=int(time.time()))
            return row

    def active(self) -> list[str]:
        with Session(self.db) as session:
            query = select(Batch.id).where(col(Batch.status).in_(ACTIVE)).order_by(col(Batch.created_at))
            return list(session.exec(query))


def _new_file(owner: str | None, filename: str, purpose: str, size: int) -> BatchFile:
    return BatchFile(
        id=f"file-{secrets.token_hex(12)}",
        owner=owner,
        filename=filename,
        purpose=purpose,
        bytes=size,
        created_at=int(time.time()),
    )


def _page(rows: list[Any], limit: int, after: str | None) -> list[Any]:
    """Newest first; `after` is the id the previous page ended with. One more than `limit` says has_more."""
    if after is not None:
        ids = [r.id for r in rows]
        rows = rows[ids.index(after) + 1 :] if after in ids else []
    return rows[: limit + 1]
