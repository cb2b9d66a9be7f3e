"""Downloads of hub repositories into the Hugging Face cache: start, pause, resume, cancel, delete, watch.

State machine: queued -> downloading -> completed | failed; downloading/queued -> paused -> queued (resume);
failed -> queued (resume, a retry); anything but completed -> cancelled (partial files removed). Each run is a thread
(blocking HTTP and hashing stay off the event loop) with its own stop event; the row in `downloads` and the partial
files on disk carry a download across restarts: at start, downloads that were running resume by themselves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from mlx_manager.db.models import Download
from mlx_manager.manager import hub_cache
from mlx_manager.manager.downloader import DownloadError, Stopped, fetch, make_client
from mlx_manager.manager.downloads_state import ACTIVE, TERMINAL, Job
from mlx_manager.manager.hub import Hub, check_repo_id
from mlx_manager.manager.hub_errors import HubError, download_not_found, invalid_state

log = logging.getLogger(__name__)

NOTIFY_INTERVAL = 0.1  # seconds between progress wake-ups of the watchers
PERSIST_INTERVAL = 2.0  # seconds between progress writes to the database
JOIN_TIMEOUT = 30.0
PAUSE_JOIN_TIMEOUT = 5.0  # a stalled read can take longer to notice; pause still holds, the thread ends later


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if abs(n) >= 1e8 else f"{n / 1e6:.2f} MB"


class DownloadManager:
    def __init__(
        self,
        db: Engine,
        hub: Hub,
        *,
        disk_reserve_bytes: int = 0,
        free_disk: Callable[[Path], int] = hub_cache.free_disk_bytes,
        on_complete: Callable[[str], Coroutine[Any, Any, Any]] | None = None,
        max_active: int = 4,
    ) -> None:
        self.db, self.hub = db, hub
        self.cache_dir = hub.cache_dir
        self.disk_reserve_bytes = disk_reserve_bytes
        self.free_disk = free_disk
        self.on_complete = on_complete
        self._jobs: dict[str, Job] = {}
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._lock = asyncio.Lock()
        self._slots = threading.Semaphore(max_active)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_notify: dict[str, float] = {}
        self._last_persist: dict[str, float] = {}

    # Lifecycle.
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for row in await asyncio.to_thread(self._load_rows):
            job = self._adopt(Job.from_row(row))
            if job.status not in ACTIVE:
                continue
            if self.hub.offline:  # it would fail at once: keep it for a resume once the hub is reachable
                log.info("Download %s of %s stays paused: HF_HUB_OFFLINE is set", job.id, job.repo_id)
                job.status = "paused"
                await asyncio.to_thread(self._persist, job)
                continue
            log.info("Resuming download %s of %s after a restart", job.id, job.repo_id)  # from the partial files
            self._launch(job)

    async def stop(self) -> None:
        """Stop the running threads without changing their status, so the next start resumes them."""
        running = [j for j in self._jobs.values() if j.thread is not None and j.thread.is_alive()]
        for job in running:
            job.stop.set()

        def join() -> None:
            for job in running:
                if job.thread is not None:
                    job.thread.join(5)

        await asyncio.to_thread(join)

    # The API.
    def list_all(self) -> list[dict[str, Any]]:
        return [j.snapshot() for j in sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)]

    def get(self, download_id: str) -> dict[str, Any]:
        return self._job(download_id).snapshot()

    async def create(self, repo_id: str, revision: str = "main", allow_patterns: Sequence[str] | None = None) -> Job:
        check_repo_id(repo_id)
        self.hub.ensure_online()
        rev = await asyncio.to_thread(self.hub.resolve, repo_id, revision, allow_patterns)
        async with self._lock:
            self._one_per_repo(repo_id)
            job = self._adopt(Job.new(rev))
            repo = hub_cache.repo_dir(self.cache_dir, repo_id)
            if hub_cache.has_snapshot(repo, rev.commit, [f.path for f in rev.files]):
                # Already here (any tool downloaded it): nothing to fetch, but the branch may need its ref.
                await asyncio.to_thread(hub_cache.write_ref, repo, revision, rev.commit)
                for f in job.files.values():
                    f.downloaded, f.phase = f.remote.size, "done"
                job.status = "completed"
                await asyncio.to_thread(self._persist, job)
                return job
            try:
                await asyncio.to_thread(self._check_disk, job)
            except HubError:
                self._jobs.pop(job.id)
                raise
            await asyncio.to_thread(self._persist, job)
            self._launch(job)
            return job

    async def pause(self, download_id: str) -> Job:
        job = self._job(download_id)
        with job.lock:  # atomically with the thread's own last step (completing), which checks the stop event
            if job.status == "paused":
                return job
            if job.status not in ACTIVE:
                raise invalid_state(job.id, job.status, "paused")
            job.stop.set()  # the thread stops at its next chunk; the partial file stays
            job.status = "paused"
        await asyncio.to_thread(self._join, job, PAUSE_JOIN_TIMEOUT)  # answer once the bytes stopped (mostly)
        await asyncio.to_thread(self._changed, job, True)
        return job

    async def resume(self, download_id: str) -> Job:
        job = self._job(download_id)
        async with self._lock:
            if job.status in ACTIVE:
                return job
            if job.status not in ("paused", "failed"):
                raise invalid_state(job.id, job.status, "resumed")
            self._one_per_repo(job.repo_id, besides=job.id)
            self.hub.ensure_online()
            await asyncio.to_thread(self._join, job)  # the previous run must be gone before one writes its files
            await asyncio.to_thread(self._check_disk, job)
            with job.lock:
                job.error, job.status = None, "queued"
            await asyncio.to_thread(self._changed, job, True)
            self._launch(job)
        return job

    async def cancel(self, download_id: str) -> Job:
        job = self._job(download_id)
        with job.lock:
            if job.status == "completed":
                raise invalid_state(job.id, job.status, "cancelled (delete the model with DELETE /api/hub/local/…)")
            job.stop.set()
            job.status = "cancelled"
        await asyncio.to_thread(self._changed, job, True)
        await asyncio.to_thread(self._join, job)
        await asyncio.to_thread(self._remove_partials, job)  # the thread does it too if it outlives the join
        return job

    async def delete(self, download_id: str) -> None:
        """Forget a download; a running or partial one is cancelled first (a completed model stays in the cache)."""
        job = self._job(download_id)
        if job.status not in ("completed", "cancelled"):
            await self.cancel(download_id)
        async with self._lock:
            self._jobs.pop(job.id, None)
            await asyncio.to_thread(self._delete_row, job.id)
        self._wake(job.id)

    async def delete_local(self, repo_id: str) -> int | None:
        """Remove a repository from the cache; None when it is not there. Refused while it is being downloaded."""
        check_repo_id(repo_id)
        async with self._lock:
            self._one_per_repo(repo_id)
            return await asyncio.to_thread(hub_cache.delete_repo, self.cache_dir, repo_id)

    async def watch(self, download_id: str) -> AsyncIterator[dict[str, Any]]:
        """Snapshots as the download moves (at most every NOTIFY_INTERVAL, and at least every second for the
        speed's sake), ending after a terminal one or when the download is deleted."""
        self._job(download_id)
        wake = asyncio.Event()
        self._watchers.setdefault(download_id, set()).add(wake)
        try:
            while True:
                wake.clear()
                job = self._jobs.get(download_id)
                if job is None:
                    return
                snap = job.snapshot()
                yield snap
                if snap["status"] in TERMINAL:
                    return
                with contextlib.suppress(TimeoutError):  # at least once a second: the speed decays when stalled
                    await asyncio.wait_for(wake.wait(), timeout=1.0)
        finally:
            self._watchers.get(download_id, set()).discard(wake)

    # Internals.
    def _job(self, download_id: str) -> Job:
        job = self._jobs.get(download_id)
        if job is None:
            raise download_not_found(download_id)
        return job

    def _adopt(self, job: Job) -> Job:
        self._jobs[job.id] = job
        job.on_progress = self._progress
        return job

    def _one_per_repo(self, repo_id: str, besides: str | None = None) -> None:
        for other in self._jobs.values():
            if other.repo_id == repo_id and other.id != besides and other.status in (*ACTIVE, "paused"):
                raise HubError(
                    409,
                    "download_in_progress",
                    f"Download '{other.id}' of '{repo_id}' is {other.status}: resume or cancel it first.",
                    extra={"download_id": other.id, "download_status": other.status},
                )

    def _check_disk(self, job: Job) -> None:
        """Refuse what would not fit: the bytes still missing against the volume's free space minus the reserve."""
        repo = hub_cache.repo_dir(self.cache_dir, job.repo_id)
        missing: dict[str, int] = {}
        for f in job.remote_files():
            if not hub_cache.blob_path(repo, f.etag).is_file():
                part = hub_cache.incomplete_path(repo, f.etag)
                missing[f.etag] = f.size - (part.stat().st_size if part.is_file() else 0)
        needed = max(sum(missing.values()), 0)
        free = self.free_disk(self.cache_dir)
        if needed > free - self.disk_reserve_bytes:
            raise HubError(
                507,
                "insufficient_storage",
                f"'{job.repo_id}' needs {_gb(needed)} more on disk; {_gb(free)} is free at {self.cache_dir} and"
                f" {_gb(self.disk_reserve_bytes)} is kept free (download_disk_reserve_bytes).",
                extra={"needed_bytes": needed, "free_bytes": free, "reserve_bytes": self.disk_reserve_bytes},
            )

    def _launch(self, job: Job) -> None:
        job.stop = threading.Event()
        job.thread = threading.Thread(target=self._run, args=(job, job.stop), name=f"download-{job.id}", daemon=True)
        job.thread.start()

    def _run(self, job: Job, stop: threading.Event) -> None:
        while not self._slots.acquire(timeout=0.5):  # at most max_active transfers; the rest stay queued
            if stop.is_set():
                return
        try:
            self._transfer(job, stop)
        finally:
            self._slots.release()

    def _transfer(self, job: Job, stop: threading.Event) -> None:
        repo = hub_cache.repo_dir(self.cache_dir, job.repo_id)
        with job.lock:
            if stop.is_set():
                return
            job.status = "downloading"
            job.rate.clear()
        self._changed(job, persist=True)
        try:
            self._check_disk(job)  # again: the disk may have filled up since it was queued
            with make_client() as client:
                headers = self.hub.headers()
                for f in job.remote_files():
                    url = self.hub.resolve_url(job.repo_id, job.commit, f.path)
                    fetch(client, url, headers, repo, f, job, stop)
                    job.phase(f.path, "done")
            with job.lock:
                if stop.is_set():
                    raise Stopped()
                for f in job.remote_files():  # the snapshot appears whole, once every file is verified
                    hub_cache.link(repo, job.commit, f.path, f.etag)
                hub_cache.write_ref(repo, job.revision, job.commit)
                job.status = "completed"
            log.info("Downloaded %s (%s) at %s", job.repo_id, _gb(job.total_bytes), job.commit[:12])
            if self.on_complete is not None and self._loop is not None:
                asyncio.run_coroutine_threadsafe(self.on_complete(job.repo_id), self._loop)
        except Stopped:
            if job.status == "cancelled":
                self._remove_partials(job)
        except (DownloadError, HubError, OSError) as exc:
            self._fail(job, stop, exc.message if isinstance(exc, HubError) else str(exc))
        except Exception as exc:
            log.exception("Download %s of %s failed", job.id, job.repo_id)
            self._fail(job, stop, f"{type(exc).__name__}: {exc}")
        self._changed(job, persist=True)

    def _fail(self, job: Job, stop: threading.Event, message: str) -> None:
        log.warning("Download %s of %s failed: %s", job.id, job.repo_id, message)
        with job.lock:
            if not stop.is_set():
                job.status, job.error = "failed", message

    def _remove_partials(self, job: Job) -> None:
        repo = hub_cache.repo_dir(self.cache_dir, job.repo_id)
        if repo.is_dir():
            hub_cache.remove_partials(repo, [f.etag for f in job.remote_files()])

    @staticmethod
    def _join(job: Job, timeout: float = JOIN_TIMEOUT) -> None:
        if job.thread is not None and job.thread is not threading.current_thread():
            job.thread.join(timeout)

    def _progress(self, job: Job, important: bool) -> None:
        """From the worker thread: wake watchers (throttled) and persist now and then."""
        now = time.monotonic()
        if now - self._last_persist.get(job.id, 0.0) >= PERSIST_INTERVAL:
            self._persist(job)
        if important or now - self._last_notify.get(job.id, 0.0) >= NOTIFY_INTERVAL:
            self._last_notify[job.id] = now
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._wake, job.id)

    def _changed(self, job: Job, persist: bool) -> None:
        job.updated_at = time.time()
        if persist:
            self._persist(job)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, job.id)

    def _wake(self, download_id: str) -> None:
        for event in self._watchers.get(download_id, ()):
            event.set()

    # The database (blocking: called from threads).
    def _persist(self, job: Job) -> None:
        self._last_persist[job.id] = time.monotonic()
        if job.id not in self._jobs:
            return  # deleted meanwhile
        with job.lock:
            row = job.to_row()
        with Session(self.db) as session:
            session.merge(row)
            session.commit()

    def _load_rows(self) -> list[Download]:
        with Session(self.db) as session:
            return list(session.exec(select(Download)).all())

    def _delete_row(self, download_id: str) -> None:
        with Session(self.db) as session:
            row = session.get(Download, download_id)
            if row is not None:
                session.delete(row)
                session.commit()
