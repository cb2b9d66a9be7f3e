"""A download's live state: per-file bytes, speed and ETA, shared between its worker thread (which advances it) and
the event loop (which snapshots it for the API and persists it)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.db.models import Download
from mlx_manager.manager.hub import RemoteFile, RepoRevision

ACTIVE = frozenset({"queued", "downloading"})
TERMINAL = frozenset({"completed", "failed", "cancelled"})
RATE_WINDOW = 5.0  # seconds of history behind a speed


class Rate:
    """Bytes per second over the last few seconds; decays to 0 when bytes stop coming."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def note(self, now: float, total: int) -> None:
        if self._samples and now - self._samples[-1][0] < 0.05:
            return  # enough resolution; keeps the deque short on fast links
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[1][0] > RATE_WINDOW:
            self._samples.popleft()

    def clear(self) -> None:
        self._samples.clear()

    def speed(self, now: float, total: int) -> float:
        if not self._samples:
            return 0.0
        t0, b0 = self._samples[0]
        return max(total - b0, 0) / (now - t0) if now - t0 > 0.2 else 0.0


@dataclass
class FileState:
    remote: RemoteFile
    downloaded: int = 0
    phase: str = "pending"  # pending, downloading, verifying, done
    rate: Rate = field(default_factory=Rate)

    def snapshot(self, now: float) -> dict[str, Any]:
        speed = self.rate.speed(now, self.downloaded) if self.phase == "downloading" else 0.0
        left = self.remote.size - self.downloaded
        return {
            "path": self.remote.path,
            "size": self.remote.size,
            "downloaded_bytes": self.downloaded,
            "status": self.phase,
            "speed_bytes_per_second": round(speed, 1),
            "eta_seconds": round(left / speed, 1) if speed > 0 and left > 0 else (0.0 if left <= 0 else None),
        }


class Job:
    """One download. Its thread calls advance/reset/phase (the downloader's Progress); `lock` guards the numbers."""

    def __init__(
        self,
        id: str,
        repo_id: str,
        revision: str,
        commit: str,
        files: list[RemoteFile],
        status: str = "queued",
        error: str | None = None,
        created_at: float | None = None,
    ) -> None:
        self.id, self.repo_id, self.revision, self.commit = id, repo_id, revision, commit
        self.files = {f.path: FileState(f) for f in files}
        self.status, self.error = status, error
        self.created_at = created_at or time.time()
        self.updated_at = self.created_at
        self.lock = threading.Lock()
        self.rate = Rate()
        self.stop = threading.Event()  # a fresh one per run: set to pause, cancel or shut down that run
        self.thread: threading.Thread | None = None
        self.on_progress: Any = None  # set by the manager: wakes watchers (throttled)

    @classmethod
    def new(cls, rev: RepoRevision) -> Job:
        return cls(uuid.uuid4().hex[:16], rev.repo_id, rev.revision, rev.commit, rev.files)

    @classmethod
    def from_row(cls, row: Download) -> Job:
        files = [RemoteFile(f["path"], int(f["size"]), f.get("sha256"), f.get("blob_id")) for f in row.files]
        commit = str(row.files[0].get("commit", "")) if row.files else ""
        job = cls(row.id, row.repo_id, row.revision, commit, files, row.status, row.error, row.created_at)
        job.updated_at = row.updated_at
        if row.status == "completed":
            for f in job.files.values():
                f.downloaded, f.phase = f.remote.size, "done"
        return job

    def to_row(self) -> Download:
        files = [
            {"path": f.remote.path, "size": f.remote.size, "sha256": f.remote.sha256, "blob_id": f.remote.blob_id}
            | {"commit": self.commit}  # the pinned commit travels with the files: the table has no column for it
            for f in self.files.values()
        ]
        # Every other column is the job's attribute of the same name (the table declares them once).
        columns = {name: getattr(self, name) for name in Download.model_fields if name != "files"}
        return Download(**columns, files=files)

    @property
    def total_bytes(self) -> int:
        return sum(f.remote.size for f in self.files.values())

    @property
    def downloaded_bytes(self) -> int:
        return sum(f.downloaded for f in self.files.values())

    def remote_files(self) -> list[RemoteFile]:
        return [f.remote for f in self.files.values()]

    # The downloader's Progress protocol, called from the worker thread.
    def advance(self, path: str, n: int) -> None:
        now = time.monotonic()
        with self.lock:
            f = self.files[path]
            f.downloaded += n
            f.rate.note(now, f.downloaded)
            self.rate.note(now, self.downloaded_bytes)
        self._changed(False)

    def reset(self, path: str, have: int) -> None:
        with self.lock:
            f = self.files[path]
            if f.downloaded != have:
                f.downloaded = have
                f.rate.clear()
                self.rate.clear()
        self._changed(False)

    def phase(self, path: str, phase: str) -> None:
        with self.lock:
            self.files[path].phase = phase
        self._changed(True)

    def _changed(self, important: bool) -> None:
        if self.on_progress is not None:
            self.on_progress(self, important)

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self.lock:
            total, done = self.total_bytes, self.downloaded_bytes
            running = self.status == "downloading"
            speed = self.rate.speed(now, done) if running else 0.0
            left = total - done
            return {
                "id": self.id,
                "repo_id": self.repo_id,
                "revision": self.revision,
                "commit": self.commit,
                "status": self.status,
                "error": self.error,
                "total_bytes": total,
                "downloaded_bytes": done,
                "progress": round(done / total, 4) if total else 1.0,
                "speed_bytes_per_second": round(speed, 1),
                "eta_seconds": round(left / speed, 1) if speed > 0 and left > 0 else (0.0 if left <= 0 else None),
                "files": [f.snapshot(now) for f in self.files.values()],
                "created_at": self.created_at,
                "updated_at": self.updated_at,
            }
