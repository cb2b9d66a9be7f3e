"""A small Hugging Face Hub on loopback, for tests: repositories built from local folders, served with the
endpoints and headers huggingface_hub and our downloader use, plus switches that break the transfer.

    GET  /api/models                                  search (search, author, sort, limit, expand[])
    GET  /api/models/{repo}[/revision/{rev}]          model info (siblings; sizes and LFS sha256 with blobs=1)
    GET  /api/models/{repo}/tree/{rev}                the file tree (snapshot_download lists it)
    HEAD|GET /{repo}/resolve/{rev}/{path}             a file: ETag, X-Repo-Commit; LFS files answer 302 to the
                                                      "CDN" (a second port, another origin) with X-Linked-Etag/-Size
    HEAD|GET /cdn/{sha256}                            LFS content, with Range

Faults (`drop_after`, `throttle`, `corrupt`) apply to file bodies; `requests` logs method, path and Range."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".npz")
PIECE = 16 * 1024  # bytes per write: small enough for throttling and drops to be precise


@dataclass
class HubFile:
    path: str
    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @functools.cached_property
    def git_oid(self) -> str:
        return hashlib.sha1(f"blob {self.size}\0".encode() + self.data, usedforsecurity=False).hexdigest()

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _safetensors_params(data: bytes) -> dict[str, int]:
    """Parameter counts by dtype, from a safetensors header (what the hub reports as `safetensors.parameters`)."""
    (length,) = struct.unpack("<Q", data[:8])
    counts: dict[str, int] = {}
    for name, spec in json.loads(data[8 : 8 + length]).items():
        if name != "__metadata__":
            n = 1
            for dim in spec["shape"]:
                n *= dim
            counts[spec["dtype"]] = counts.get(spec["dtype"], 0) + n
    return counts


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=lambda: ["mlx", "safetensors"])
    last_modified: str = "2025-01-01T00:00:00.000Z"
    safetensors: dict[str, int] | None = None  # overrides the counts read from the files (e.g. a "70B" repo)

    @classmethod
    def from_folder(cls, repo_id: str, folder: Path, readme: str | None = None, **kw: Any) -> HubRepo:
        files = {
            p.relative_to(folder).as_posix(): HubFile(
                p.relative_to(folder).as_posix(), p.read_bytes(), p.suffix in LFS_SUFFIXES
            )
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        }
        name = repo_id.split("/")[-1]
        text = readme or f"---\nlibrary_name: mlx\ntags:\n- mlx\n---\n\n# {name}\n\nA tiny random-weight model.\n"
        files["README.md"] = HubFile("README.md", text.encode(), False)
        return cls(repo_id, files, **kw)

    @functools.cached_property
    def sha(self) -> str:
        digest = hashlib.sha1(usedforsecurity=False)
        for path in sorted(self.files):
            digest.update(f"{path}\0{self.files[path].git_oid}\0".encode())
        return digest.hexdigest()

    def params(self) -> dict[str, int]:
        if self.safetensors is not None:
            return self.safetensors
        counts: dict[str, int] = {}
        for f in self.files.values():
            if f.path.endswith(".safetensors"):
                for dtype, n in _safetensors_params(f.data).items():
                    counts[dtype] = counts.get(dtype, 0) + n
        return counts

    def info(self, blobs: bool, expand: list[str] | None) -> dict[str, Any]:
        siblings = []
        for f in self.files.values():
            entry: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                entry |= {"size": f.size, "blobId": f.git_oid}
                if f.lfs:
                    entry["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": 134}
            siblings.append(entry)
        params = self.params()
        full: dict[str, Any] = {
            "_id": self.sha[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0],
            "sha": self.sha,
            "lastModified": self.last_modified,
            "createdAt": self.last_modified,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": self.downloads,
            "likes": self.likes,
            "tags": self.tags,
            "pipeline_tag": "text-generation",
            "library_name": "mlx",
            "siblings": siblings,
            "usedStorage": sum(f.size for f in self.files.values()),
            **({"safetensors": {"parameters": params, "total": sum(params.values())}} if params else {}),
        }
        if expand:  # the hub answers only the expanded properties (and the id)
            return {k: v for k, v in full.items() if k in expand or k in ("_id", "id")}
        return full

    def file_by_sha256(self, sha256: str) -> HubFile | None:
        return next((f for f in self.files.values() if f.lfs and f.sha256 == sha256), None)


@dataclass
class Fault:
    kind: str  # drop, corrupt
    times: int
    after: int = 0
    pattern: str = "*"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: LoopbackHub


class LoopbackHub:
    def __init__(self, repos: list[HubRepo] | None = None) -> None:
        self.repos: dict[str, HubRepo] = {r.repo_id: r for r in repos or []}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.bytes_per_second: float | None = None
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._servers: list[_Server] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def start(self) -> LoopbackHub:
        for _ in range(2):  # the hub, and the "CDN" on another port (another origin, as on the real hub)
            server = _Server(("127.0.0.1", 0), _Handler)
            server.hub = self
            threading.Thread(target=server.serve_forever, daemon=True, name="loopback-hub").start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    # Faults.
    def drop_after(self, nbytes: int, times: int = 1, pattern: str = "*") -> None:
        """The next `times` file bodies matching `pattern` stop after `nbytes`: the connection is closed."""
        with self._lock:
            self.faults.append(Fault("drop", times, nbytes, pattern))

    def corrupt(self, times: int = 1, pattern: str = "*") -> None:
        """The next `times` file bodies matching `pattern` have a flipped byte."""
        with self._lock:
            self.faults.append(Fault("corrupt", times, 0, pattern))

    def throttle(self, bytes_per_second: float | None) -> None:
        self.bytes_per_second = bytes_per_second

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()
        self.bytes_per_second = None

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fnmatch.fnmatch(path, fault.pattern):
                    fault.times -= 1
                    return fault
        return None

    def ranges(self, repo_id: str, path: str) -> list[str | None]:
        """Range headers of the GETs of a file's bytes (at its resolve URL, or at the CDN for an LFS file)."""
        f = self.repos[repo_id].files[path]
        where = f"/cdn/{f.sha256}" if f.lfs else f"/{repo_id}/resolve/"
        with self._lock:
            return [
                rng
                for method, p, rng in self.requests
                if method == "GET" and (p == where or (p.startswith(where) and p.endswith("/" + path)))
            ]


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def hub(self) -> LoopbackHub:
        return self.server.hub

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        with self.hub._lock:
            self.hub.requests.append((self.command, path, self.headers.get("Range")))
        parts = path.strip("/").split("/")
        try:
            if parts[:2] == ["api", "models"]:
                self._api(parts[2:], query)
            elif parts[0] == "cdn" and len(parts) == 2:
                self._cdn(parts[1], head)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), head)
            else:
                self._error(404, "Not found")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _repo(self, repo_id: str, rev: str | None) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        if rev is not None and rev not in ("main", repo.sha):
            self._error(404, "Invalid rev id", "RevisionNotFound")
            return None
        return repo

    def _api(self, rest: list[str], query: dict[str, list[str]]) -> None:
        expand = query.get("expand") or query.get("expand[]")
        if not rest:
            return self._search(query, expand)
        repo_id, tail = "/".join(rest[:2]), rest[2:]
        rev = tail[1] if len(tail) >= 2 and tail[0] in ("revision", "tree") else None
        repo = self._repo(repo_id, rev)
        if repo is None:
            return None
        if tail and tail[0] == "tree":
            entries = [
                {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
                | ({"lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134}} if f.lfs else {})
                for f in repo.files.values()
            ]
            return self._json(entries)
        return self._json(repo.info(bool(query.get("blobs")), expand))

    def _search(self, query: dict[str, list[str]], expand: list[str] | None) -> None:
        repos = list(self.hub.repos.values())
        if author := _first(query, "author"):
            repos = [r for r in repos if r.repo_id.split("/")[0] == author]
        if search := _first(query, "search"):
            repos = [r for r in repos if search.lower() in r.repo_id.lower()]
        sort = _first(query, "sort") or "downloads"
        key = {"likes": lambda r: r.likes, "lastModified": lambda r: r.last_modified}.get(sort, lambda r: r.downloads)
        repos.sort(key=key, reverse=True)
        limit = int(_first(query, "limit") or 1000)
        self._json([r.info(False, expand) for r in repos[:limit]])

    def _resolve(self, repo_id: str, rev: str, file_path: str, head: bool) -> None:
        repo = self._repo(repo_id, rev)
        if repo is None:
            return
        f = repo.files.get(file_path)
        if f is None:
            self._error(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": repo.sha})
            return
        common = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if f.lfs:  # as the real hub: a redirect to the CDN, carrying the file's metadata
            linked = {"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)}
            location = {"Location": f"{self.hub.cdn}/cdn/{f.sha256}", "ETag": f'"{f.git_oid}"'}
            self._send(302, {**common, **linked, **location}, b"")
            return
        self._body(f, head, {**common, "ETag": f'"{f.git_oid}"'})

    def _cdn(self, sha256: str, head: bool) -> None:
        f = next((f for r in self.hub.repos.values() if (f := r.file_by_sha256(sha256))), None)
        if f is None:
            self._error(404, "Not found")
            return
        self._body(f, head, {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"})

    def _body(self, f: HubFile, head: bool, headers: dict[str, str]) -> None:
        start, end, status = 0, f.size - 1, 200
        if rng := self.headers.get("Range"):
            try:
                first, _, last = rng.removeprefix("bytes=").partition("-")
                start, end = int(first), int(last) if last else f.size - 1
            except ValueError:
                start = -1
            if start < 0 or start >= f.size or end < start:
                self._error(416, "Range not satisfiable", extra={"Content-Range": f"bytes */{f.size}"})
                return
            end, status = min(end, f.size - 1), 206
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        data = f.data[start : end + 1]
        self._send(status, {**headers, "Content-Type": "application/octet-stream"}, data, body=False)
        if head:
            return
        fault = self.hub.take_fault(f.path)
        if fault is not None and fault.kind == "corrupt":
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :] if data else data
        limit = fault.after if fault is not None and fault.kind == "drop" else None
        sent = 0
        while sent < len(data):
            piece = data[sent : sent + PIECE]
            if limit is not None and sent + len(piece) >= limit:
                self.wfile.write(piece[: max(limit - sent, 0)])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the client sees a truncated transfer
                self.close_connection = True
                return
            self.wfile.write(piece)
            sent += len(piece)
            if self.hub.bytes_per_second:
                time.sleep(len(piece) / self.hub.bytes_per_second)

    def _send(self, status: int, headers: dict[str, str], data: bytes, body: bool = True) -> None:
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, body: Any) -> None:
        self._send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def _error(self, status: int, message: str, code: str | None = None, extra: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", **(extra or {})}
        if code:  # what huggingface_hub reads to raise RepositoryNotFoundError and friends
            headers |= {"X-Error-Code": code, "X-Error-Message": message}
        self._send(status, headers, json.dumps({"error": message}).encode())


@contextmanager
def serve_hub(repos: list[HubRepo]) -> Iterator[LoopbackHub]:
    hub = LoopbackHub(repos).start()
    try:
        yield hub
    finally:
        hub.stop()
