"""Downloads across a killed server, and the free-disk check: each needs a server of its own."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlx_manager.testing.hub_server import LoopbackHub, serve_hub
from tests.api.hub_helpers import assert_snapshot_matches, hub_repos, hub_server, partial_files, wait_for

SAFETENSORS = "model.safetensors"


@pytest.fixture(scope="module")
def hub(tiny_models: dict[str, Path]) -> Iterator[LoopbackHub]:
    with serve_hub(hub_repos(tiny_models)) as loopback:
        yield loopback


def test_a_download_resumes_from_its_partial_file_after_the_server_is_killed(hub: LoopbackHub, tmp_path: Path) -> None:
    repo = hub.repos["mlx-community/tiny-phi4"]
    cache = tmp_path / "hf-cache"
    hub.throttle(300_000)
    with hub_server(tmp_path, hub) as srv:
        r = httpx.post(f"{srv.base_url}/api/downloads", json={"repo_id": repo.repo_id}, timeout=60)
        download_id = r.json()["id"]
        url = f"{srv.base_url}/api/downloads/{download_id}"
        wait_for(url, lambda d: d["downloaded_bytes"] > 400_000, what="400 kB")
        srv.proc.send_signal(signal.SIGKILL)  # no shutdown at all: only the table and the partial file remain
        srv.proc.wait(10)
    parts = partial_files(cache, repo.repo_id)
    assert len(parts) == 1
    kept = parts[0].stat().st_size
    assert kept > 200_000

    hub.throttle(None)
    with hub_server(tmp_path, hub) as srv:  # same home: same database and cache
        url = f"{srv.base_url}/api/downloads/{download_id}"
        done = wait_for(url, lambda d: d["status"] in ("completed", "failed"), what="the resumed download")
        assert done["status"] == "completed", done["error"]
        assert done["downloaded_bytes"] == done["total_bytes"]
        ranges = hub.ranges(repo.repo_id, SAFETENSORS)
        assert ranges[0] is None and ranges[-1] == f"bytes={kept}-", ranges  # on from the bytes on disk
        assert_snapshot_matches(cache, repo)
        assert not partial_files(cache, repo.repo_id)
        assert "Resuming download" in srv.log()
        models = [m["id"] for m in httpx.get(f"{srv.base_url}/v1/models").json()["data"]]
        assert repo.repo_id in models


def test_a_download_that_would_not_fit_on_disk_is_a_507_with_the_numbers(hub: LoopbackHub, tmp_path: Path) -> None:
    # Keeping an exabyte free: no volume has that, so any download is refused before it starts.
    env = {"MLX_MANAGER_DOWNLOAD_DISK_RESERVE_BYTES": str(10**18)}
    with hub_server(tmp_path, hub, env) as srv:
        r = httpx.post(f"{srv.base_url}/api/downloads", json={"repo_id": "mlx-community/tiny-qwen3"}, timeout=60)
        assert r.status_code == 507 and r.headers["content-type"] == "application/problem+json", r.text
        problem = r.json()
        assert problem["code"] == "insufficient_storage" and problem["status"] == 507
        total = sum(f.size for f in hub.repos["mlx-community/tiny-qwen3"].files.values())
        assert problem["needed_bytes"] == total and problem["reserve_bytes"] == 10**18 and problem["free_bytes"] > 0
        assert "download_disk_reserve_bytes" in problem["detail"]
        assert httpx.get(f"{srv.base_url}/api/downloads").json()["data"] == []  # nothing was started
        assert not (tmp_path / "hf-cache" / "models--mlx-community--tiny-qwen3").exists()
