"""Shared by the hub and download tests: the loopback hub's repositories, a server pointed at it, SSE reading."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from mlx_manager.sse import iter_json
from mlx_manager.testing.hub_server import HubFile, HubRepo, LoopbackHub
from mlx_manager.testing.server import ServerProcess, run_server

# A repository too big for any memory budget: search must say it does not fit (its files stay tiny).
GIANT = "mlx-community/Giant-405B-4bit"


def hub_repos(tiny_models: dict[str, Path]) -> list[HubRepo]:
    """Every tiny model as mlx-community/<name> (downloads falling with the name's order), one from another
    author, and a giant one that only exists for search."""
    repos = [
        HubRepo.from_folder(f"mlx-community/{name}", folder, downloads=1000 - 10 * i, likes=i)
        for i, (name, folder) in enumerate(sorted(tiny_models.items()))
    ]
    repos.append(HubRepo.from_folder("someone-else/tiny-llama", tiny_models["tiny-llama"], downloads=5000))
    config = HubFile("config.json", b'{"model_type": "llama"}', False)
    repos.append(HubRepo(GIANT, {"config.json": config}, downloads=1, safetensors={"U32": 50_000_000_000}))
    return repos


@contextmanager
def hub_server(home: Path, hub: LoopbackHub, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A real server whose huggingface_hub talks to the loopback hub (online for this server only)."""
    with run_server(home, [], {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", **(env or {})}) as srv:
        yield srv


def sse(url: str, timeout: float = 120) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a server-sent event stream, until the server ends it."""
    with httpx.stream("GET", url, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        yield from iter_json(response)


def wait_for(url: str, predicate: Any, timeout: float = 120, what: str = "") -> dict[str, Any]:
    """Poll a JSON GET until predicate(body) holds."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(url, timeout=30).json()
        if predicate(body):
            return body
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or 'a condition'}: {body}")


def snapshot(cache: Path, repo_id: str) -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = (repo / "refs" / "main").read_text()
    return repo / "snapshots" / commit


def assert_snapshot_matches(cache: Path, repo: HubRepo) -> None:
    """Every file of the hub repo is in the snapshot, a symlink into blobs/, with the hub's content (sha256)."""
    folder = snapshot(cache, repo.repo_id)
    assert folder.name == repo.sha
    for path, f in repo.files.items():
        local = folder / path
        assert local.is_symlink() and local.resolve().parent.name == "blobs", path
        assert hashlib.sha256(local.read_bytes()).hexdigest() == f.sha256, path
        assert local.resolve().name == (f.sha256 if f.lfs else f.git_oid), path


def partial_files(cache: Path, repo_id: str) -> list[Path]:
    blobs = cache / ("models--" + repo_id.replace("/", "--")) / "blobs"
    return sorted(blobs.glob("*.incomplete")) if blobs.is_dir() else []
