"""One file's bytes from the hub into the cache: resumable, interruptible, verified.

Why not `hf_hub_download`: it offers no pause or cancel, no progress hook we own, and since huggingface_hub 1.x it
writes to a process-unique temporary file that it deletes on failure, so nothing survives a pause or a restart.
This writes `blobs/<etag>.incomplete` (where huggingface_hub's resumable versions did, and what `scan_cache_dir`
reports), resumes it with a Range request, and only renames it to `blobs/<etag>` once its sha256 (LFS) or git blob
sha1 matches what the hub published. Blocking: it runs on a download's own thread."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from mlx_manager.manager import hub_cache
from mlx_manager.manager.hub import RemoteFile

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_RETRIES = 5  # consecutive attempts that brought no new byte
MAX_CORRUPT = 2  # complete copies whose checksum was wrong before giving up
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
REDIRECTS = (301, 302, 303, 307, 308)


class Stopped(Exception):
    """The download was asked to stop (pause, cancel, shutdown); the partial file stays as it is."""


class DownloadError(Exception):
    """A file could not be fetched intact; the message says which and why."""


class _Transient(Exception):
    """Worth another try: a dropped connection, a 5xx, a 429."""


class Progress(Protocol):
    def advance(self, path: str, n: int) -> None: ...
    def reset(self, path: str, have: int) -> None: ...
    def phase(self, path: str, phase: str) -> None: ...


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class Partial:
    """blobs/<etag>.incomplete with a running hash of exactly the bytes on disk."""

    def __init__(self, path: Path, f: RemoteFile) -> None:
        self.path, self.file = path, f
        self.hasher: Any = None
        self.size = -1  # bytes the hasher has seen; -1: not in step with the disk

    def _new_hasher(self) -> Any:
        if self.file.sha256:
            return hashlib.sha256()
        if self.file.blob_id:  # git's blob id: sha1 over "blob <size>\0" and the content
            h = hashlib.sha1(usedforsecurity=False)
            h.update(f"blob {self.file.size}\0".encode())
            return h
        return None

    def sync(self, stop: threading.Event) -> int:
        """Bring the hasher in step with the file on disk (re-reading it only when needed, e.g. after a restart)."""
        on_disk = self.path.stat().st_size if self.path.is_file() else 0
        if on_disk > self.file.size:
            self.path.unlink()
            on_disk = 0
        if on_disk != self.size:
            self.hasher, self.size = self._new_hasher(), 0
            if on_disk:
                with self.path.open("rb") as fh:
                    while chunk := fh.read(CHUNK):
                        if stop.is_set():
                            raise Stopped()
                        self._update(chunk)
        return self.size

    def _update(self, chunk: bytes) -> None:
        if self.hasher is not None:
            self.hasher.update(chunk)
        self.size += len(chunk)

    def open(self, restart: bool) -> BinaryIO:
        if restart:
            self.hasher, self.size = self._new_hasher(), 0
        return self.path.open("wb" if restart else "ab")

    def append(self, out: BinaryIO, chunk: bytes) -> None:
        out.write(chunk)
        self._update(chunk)

    def matches(self) -> bool:
        expected = self.file.sha256 or self.file.blob_id
        return self.hasher is None or self.hasher.hexdigest() == expected

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.size = -1


def locate(client: httpx.Client, url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """HEAD the resolve URL as huggingface_hub does: follow redirects on the same host, stop at a CDN's.
    Returns where to GET the bytes and the hub's headers (x-repo-commit, x-linked-etag, x-linked-size, etag)."""
    meta: dict[str, str] = {}
    for _ in range(10):
        r = client.head(url, headers={**headers, "Accept-Encoding": "identity"})
        meta.update({k.lower(): v for k, v in r.headers.items() if k.lower().startswith("x-") or k.lower() == "etag"})
        if r.status_code in REDIRECTS and "location" in r.headers:
            target = urljoin(url, r.headers["location"])
            if _origin(target) != _origin(url):
                return target, meta  # a CDN: the metadata is on this response, and the token stays home
            url = target
            continue
        if r.status_code == 429 or r.status_code >= 500:
            raise _Transient(f"HTTP {r.status_code}")
        if r.status_code >= 400:
            raise DownloadError(f"{url}: HTTP {r.status_code} {r.headers.get('x-error-message', '')}".strip())
        return url, meta
    raise DownloadError(f"{url}: too many redirects")


def fetch(
    client: httpx.Client,
    resolve_url: str,
    headers: dict[str, str],
    repo: Path,
    f: RemoteFile,
    progress: Progress,
    stop: threading.Event,
) -> None:
    """Make blobs/<etag> exist with the right content, resuming blobs/<etag>.incomplete. Raises Stopped or
    DownloadError; a partial file is kept for a later resume, a corrupt copy is deleted."""
    blob = hub_cache.blob_path(repo, f.etag)
    if blob.is_file():
        progress.reset(f.path, f.size)
        return
    blob.parent.mkdir(parents=True, exist_ok=True)
    part = Partial(hub_cache.incomplete_path(repo, f.etag), f)
    failures = corrupt = 0
    while True:
        if stop.is_set():
            raise Stopped()
        if part.size < 0 and part.path.is_file():
            progress.phase(f.path, "verifying")  # hashing what an earlier run left
        have = part.sync(stop)
        progress.reset(f.path, have)
        if have == f.size:
            if part.matches():
                part.path.touch()  # an empty file never got a byte written
                os.chmod(part.path, 0o644)
                os.replace(part.path, blob)
                return
            corrupt += 1
            part.discard()
            if corrupt >= MAX_CORRUPT:
                raise DownloadError(f"{f.path}: checksum mismatch {corrupt} times (expected {f.etag}); nothing kept")
            log.warning("%s: checksum mismatch, downloading it again", f.path)
            continue
        progress.phase(f.path, "downloading")
        try:
            got = _transfer(client, resolve_url, headers, f, part, progress, stop)
        except (httpx.TransportError, _Transient) as exc:
            got = part.size - have if part.size >= 0 else 0
            if got <= 0:
                failures += 1
                if failures > MAX_RETRIES:
                    raise DownloadError(f"{f.path}: {exc!r}, {failures} attempts without progress") from exc
                stop.wait(BACKOFF[min(failures, len(BACKOFF)) - 1])
            log.warning("%s: %r at byte %d of %d; resuming", f.path, exc, max(part.size, 0), f.size)
        except OSError as exc:  # disk full, permissions: the partial file stays for a resume
            raise DownloadError(f"{f.path}: {exc}") from exc
        if got > 0:
            failures = 0


def _transfer(
    client: httpx.Client,
    resolve_url: str,
    headers: dict[str, str],
    f: RemoteFile,
    part: Partial,
    progress: Progress,
    stop: threading.Event,
) -> int:
    """One GET from the partial's end on; returns the bytes appended."""
    url, meta = locate(client, resolve_url, headers)
    etag = (meta.get("x-linked-etag") or meta.get("etag") or "").removeprefix("W/").strip('"')
    if etag and etag != f.etag:  # the checksum still decides; only the blob's name could differ from the hub's
        log.warning("%s: the hub serves etag %s, its metadata said %s", f.path, etag, f.etag)
    send = dict(headers) if _origin(url) == _origin(resolve_url) else {}
    send["Accept-Encoding"] = "identity"  # sizes and ranges count the file's own bytes
    have = part.size
    if have:
        send["Range"] = f"bytes={have}-"
    with client.stream("GET", url, headers=send, follow_redirects=True) as r:
        if r.status_code == 416:  # `have` is short of the size the hub announced, yet it has nothing past it
            raise _Transient(f"HTTP 416 for bytes {have}-")
        if r.status_code == 429 or r.status_code >= 500:
            raise _Transient(f"HTTP {r.status_code}")
        if r.status_code not in (200, 206):
            raise DownloadError(f"{f.path}: HTTP {r.status_code}")
        restart = bool(have) and r.status_code == 200  # the server ignored the Range: start over
        if r.status_code == 206 and not r.headers.get("content-range", "").startswith(f"bytes {have}-"):
            raise _Transient(f"asked for bytes {have}-, got {r.headers.get('content-range')}")
        start = 0 if restart else have
        with part.open(restart) as out:
            if restart:
                progress.reset(f.path, 0)
            for chunk in r.iter_bytes():  # as the bytes arrive: live progress, a prompt pause
                if stop.is_set():
                    raise Stopped()
                if part.size + len(chunk) > f.size:
                    part.discard()
                    raise DownloadError(f"{f.path}: the hub sent more than the {f.size} bytes it announced")
                part.append(out, chunk)
                progress.advance(f.path, len(chunk))
    return part.size - start


def make_client(timeout: float = 30.0) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=False)
