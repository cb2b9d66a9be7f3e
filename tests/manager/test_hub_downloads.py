"""The download manager and the byte downloader in-process, against the loopback hub: the cache layout is the one
huggingface_hub writes and reads, partial files resume, bad bytes never become a blob."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download

from mlx_manager.db.session import open_database
from mlx_manager.manager import downloader, hub_cache
from mlx_manager.manager.downloads import DownloadManager
from mlx_manager.manager.hub import Hub, MemoryRoom
from mlx_manager.testing.hub_server import HubFile, HubRepo, LoopbackHub, serve_hub

REPO = "mlx-community/tiny-llama"


@pytest.fixture(scope="module")
def hub(tiny_models: dict[str, Path]) -> Iterator[LoopbackHub]:
    repo = HubRepo.from_folder(REPO, tiny_models["tiny-llama"], downloads=7)
    repo.files["docs/empty.txt"] = HubFile("docs/empty.txt", b"", False)  # a nested path, and zero bytes
    repos = [repo]
    with serve_hub(repos) as loopback:
        yield loopback


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch, hub: LoopbackHub) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; this hub is loopback
    hub.reset()


def _download(cache: Path, db_path: Path, hub: LoopbackHub, repo_id: str = REPO) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        manager = DownloadManager(open_database(db_path), Hub(cache, endpoint=hub.endpoint))
        await manager.start()
        job = await manager.create(repo_id)
        last: dict[str, Any] = {}
        async for snap in manager.watch(job.id):
            last = snap
        await manager.stop()
        return last

    return asyncio.run(run())


def _tree(repo: Path) -> dict[str, str]:
    """Every entry under snapshots/, refs/ and blobs/: symlink targets, ref contents, blob names."""
    out: dict[str, str] = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if rel.split("/")[0] not in ("snapshots", "refs", "blobs") or (path.is_dir() and not path.is_symlink()):
            continue
        out[rel] = os.readlink(path) if path.is_symlink() else (path.read_text() if rel.startswith("refs") else "")
    return out


def test_our_cache_layout_is_the_one_snapshot_download_writes(hub: LoopbackHub, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    final = _download(ours, tmp_path / "db.sqlite", hub)
    assert final["status"] == "completed", final["error"]
    snapshot_download(REPO, cache_dir=theirs, endpoint=hub.endpoint)
    folder = hub_cache.repo_dir(ours, REPO).name
    assert _tree(ours / folder) == _tree(theirs / folder)
    assert not list((ours / folder / "blobs").glob("*.incomplete"))
    (scanned,) = scan_cache_dir(ours).repos
    (reference,) = scan_cache_dir(theirs).repos
    assert (scanned.repo_id, scanned.nb_files, scanned.size_on_disk) == (
        REPO,
        reference.nb_files,
        reference.size_on_disk,
    )
    assert {k: v.commit_hash for k, v in scanned.refs.items()} == {"main": hub.repos[REPO].sha}


def test_huggingface_hub_finds_our_download_offline(hub: LoopbackHub, tmp_path: Path) -> None:
    _download(tmp_path / "cache", tmp_path / "db.sqlite", hub)
    hub.reset()
    path = hf_hub_download(REPO, "config.json", cache_dir=tmp_path / "cache", local_files_only=True)
    assert Path(path).read_bytes() == hub.repos[REPO].files["config.json"].data
    folder = snapshot_download(REPO, cache_dir=tmp_path / "cache", local_files_only=True)
    files = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if not p.is_dir())
    assert files == sorted(hub.repos[REPO].files)
    assert hub.requests == []


def test_a_download_interrupted_by_a_shutdown_waits_out_an_offline_start_then_resumes(
    hub: LoopbackHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, db_path = tmp_path / "cache", tmp_path / "db.sqlite"
    hub.throttle(500_000)

    async def first() -> str:
        manager = DownloadManager(open_database(db_path), Hub(cache, endpoint=hub.endpoint))
        await manager.start()
        job = await manager.create(REPO)
        async for snap in manager.watch(job.id):
            if snap["downloaded_bytes"] > 300_000:
                break
        await manager.stop()  # a shutdown: the download stays 'downloading' for the next start
        return job.id

    download_id = asyncio.run(first())
    hub.throttle(None)

    async def offline() -> str:
        manager = DownloadManager(open_database(db_path), Hub(cache, endpoint=hub.endpoint))
        await manager.start()
        status = str(manager.get(download_id)["status"])
        await manager.stop()
        return status

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    requests = len(hub.requests)
    assert asyncio.run(offline()) == "paused"  # started offline: kept for later, not failed
    assert len(hub.requests) == requests
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)

    async def second() -> dict[str, Any]:
        manager = DownloadManager(open_database(db_path), Hub(cache, endpoint=hub.endpoint))
        await manager.start()
        await manager.resume(download_id)
        last: dict[str, Any] = {}
        async for snap in manager.watch(download_id):
            last = snap
        await manager.stop()
        return last

    final = asyncio.run(second())
    assert final["status"] == "completed", final["error"]
    ranges = hub.ranges(REPO, "model.safetensors")
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")


class _Progress:
    def __init__(self) -> None:
        self.bytes = 0

    def advance(self, path: str, n: int) -> None:
        self.bytes += n

    def reset(self, path: str, have: int) -> None:
        self.bytes = have

    def phase(self, path: str, phase: str) -> None:
        pass


def _weights(hub: LoopbackHub, tmp_path: Path) -> tuple[Hub, Any, Path]:
    api = Hub(tmp_path, endpoint=hub.endpoint)
    rev = api.resolve(REPO, "main", ["model.safetensors"])
    return api, rev.files[0], hub_cache.repo_dir(tmp_path, REPO)


def _fetch(api: Hub, f: Any, repo: Path, stop: threading.Event | None = None) -> _Progress:
    progress = _Progress()
    with downloader.make_client() as client:
        url = api.resolve_url(REPO, "main", f.path)
        downloader.fetch(client, url, api.headers(), repo, f, progress, stop or threading.Event())
    return progress


def test_a_partial_file_from_an_earlier_run_is_continued_with_a_range_request(hub: LoopbackHub, tmp_path: Path) -> None:
    api, f, repo = _weights(hub, tmp_path)
    data = hub.repos[REPO].files[f.path].data
    part = hub_cache.incomplete_path(repo, f.etag)
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1_000_000])
    progress = _fetch(api, f, repo)
    assert hub.ranges(REPO, f.path) == ["bytes=1000000-"]
    assert hub_cache.blob_path(repo, f.etag).read_bytes() == data and not part.exists()
    assert progress.bytes == f.size


def test_a_partial_file_with_wrong_bytes_is_thrown_away_and_fetched_whole(hub: LoopbackHub, tmp_path: Path) -> None:
    api, f, repo = _weights(hub, tmp_path)
    part = hub_cache.incomplete_path(repo, f.etag)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * f.size)  # complete in size, wrong in content
    _fetch(api, f, repo)
    assert hub.ranges(REPO, f.path) == [None]
    assert hub_cache.blob_path(repo, f.etag).read_bytes() == hub.repos[REPO].files[f.path].data


def test_a_connection_that_never_delivers_fails_with_a_clear_error(
    hub: LoopbackHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloader, "BACKOFF", (0.01,))
    api, f, repo = _weights(hub, tmp_path)
    hub.drop_after(0, times=100, pattern=f.path)
    with pytest.raises(downloader.DownloadError, match=r"model\.safetensors.*attempts without progress"):
        _fetch(api, f, repo)
    assert len(hub.ranges(REPO, f.path)) == downloader.MAX_RETRIES + 1
    assert not hub_cache.blob_path(repo, f.etag).exists()


def test_a_stop_leaves_the_partial_file_for_later(hub: LoopbackHub, tmp_path: Path) -> None:
    api, f, repo = _weights(hub, tmp_path)
    hub.throttle(400_000)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(downloader.Stopped):
        _fetch(api, f, repo, stop)
    part = hub_cache.incomplete_path(repo, f.etag)
    assert 0 < part.stat().st_size < f.size and not hub_cache.blob_path(repo, f.etag).exists()


def test_removing_partials_keeps_blobs_that_another_snapshot_uses(tmp_path: Path) -> None:
    repo = tmp_path / "models--a--b"
    (repo / "blobs").mkdir(parents=True)
    for name in ("shared", "mine"):
        (repo / "blobs" / name).write_bytes(b"x")
    (repo / "blobs" / "more.incomplete").write_bytes(b"xy")
    hub_cache.link(repo, "c" * 40, "config.json", "shared")
    freed = hub_cache.remove_partials(repo, ["shared", "mine", "more"])
    assert freed == 3 and sorted(p.name for p in (repo / "blobs").iterdir()) == ["shared"]
    assert (repo / "snapshots" / ("c" * 40) / "config.json").read_bytes() == b"x"
    with pytest.raises(ValueError):
        hub_cache.pointer_path(repo, "c" * 40, "../../escape")


def test_hub_search_and_info_go_through_hfapi(hub: LoopbackHub, tmp_path: Path) -> None:
    api = Hub(tmp_path, endpoint=hub.endpoint)
    (found,) = api.search(None, "mlx-community", "downloads", 10, MemoryRoom(10**12, 10**12))
    assert found["id"] == REPO and found["downloads"] == 7 and found["fits_in_memory"] is True
    assert MemoryRoom(10**6, 10**12).fits(found["size_bytes"]) is False
    details = api.details(REPO, None, MemoryRoom(10**12, 10**12))
    assert details["card"] and {f["path"] for f in details["files"]} == set(hub.repos[REPO].files)
    assert any(path.startswith("/api/models") for _, path, _ in hub.requests)
    assert httpx.get(f"{hub.endpoint}/api/models/{REPO}").json()["sha"] == details["sha"]
