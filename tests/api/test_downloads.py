"""Downloads through the API, from the loopback hub into the server's Hugging Face cache: live progress over SSE,
pause and resume with a Range request, cancel, dropped connections, corrupt bytes, one download per repository,
deleting a model. The restart and disk-full cases are in test_downloads_restart.py."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import scan_cache_dir

from mlx_manager.testing.hub_server import LoopbackHub, serve_hub
from mlx_manager.testing.server import ServerProcess
from tests.api.hub_helpers import assert_snapshot_matches, hub_repos, hub_server, partial_files, sse, wait_for

SAFETENSORS = "model.safetensors"


@pytest.fixture(scope="module")
def hub(tiny_models: dict[str, Path]) -> Iterator[LoopbackHub]:
    with serve_hub(hub_repos(tiny_models)) as loopback:
        yield loopback


@pytest.fixture(autouse=True)
def _fresh_hub(hub: LoopbackHub) -> None:
    hub.reset()  # no fault, throttle or request log left over from another test


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads-home")


@pytest.fixture(scope="module")
def srv(hub: LoopbackHub, home: Path) -> Iterator[ServerProcess]:
    with hub_server(home, hub) as server:
        yield server


@pytest.fixture(scope="module")
def cache(home: Path) -> Path:
    return home / "hf-cache"  # the server's HF_HUB_CACHE (run_server's default)


def _start(srv: ServerProcess, repo_id: str, **extra: Any) -> dict[str, Any]:
    r = httpx.post(f"{srv.base_url}/api/downloads", json={"repo_id": repo_id, **extra}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()


def _url(srv: ServerProcess, download_id: str, tail: str = "") -> str:
    return f"{srv.base_url}/api/downloads/{download_id}{tail}"


def test_a_download_streams_progress_then_the_model_is_listed_and_answers_chat(
    srv: ServerProcess, hub: LoopbackHub, cache: Path
) -> None:
    repo = hub.repos["mlx-community/tiny-llama"]
    hub.throttle(4_000_000)  # ~0.6 s for the model: several progress events, a measurable speed
    started = _start(srv, repo.repo_id)
    assert started["status"] in ("queued", "downloading") and started["commit"] == repo.sha
    total = sum(f.size for f in repo.files.values())
    assert started["total_bytes"] == total and {f["path"] for f in started["files"]} == set(repo.files)

    events = list(sse(_url(srv, started["id"], "/events")))
    names = [name for name, _ in events]
    assert names[-1] == "completed" and set(names[:-1]) == {"progress"}, names
    seen = [data["downloaded_bytes"] for _, data in events]
    assert seen == sorted(seen) and seen[-1] == total and len(set(seen)) >= 3, seen
    moving = [data for _, data in events if data["status"] == "downloading" and data["speed_bytes_per_second"] > 0]
    assert moving, "no event carried a speed"
    assert all(d["eta_seconds"] is not None and d["eta_seconds"] >= 0 for d in moving)
    weights = [f for d in moving for f in d["files"] if f["path"] == SAFETENSORS and f["status"] == "downloading"]
    assert any(f["speed_bytes_per_second"] > 0 and f["eta_seconds"] is not None for f in weights)
    final = events[-1][1]
    assert final["progress"] == 1.0 and final["eta_seconds"] == 0.0 and final["error"] is None
    assert all(f["status"] == "done" and f["downloaded_bytes"] == f["size"] for f in final["files"])

    assert_snapshot_matches(cache, repo)  # every file verified against the hub's sha256
    assert not partial_files(cache, repo.repo_id)
    cached = {r.repo_id: r for r in scan_cache_dir(cache).repos}  # huggingface_hub recognises it
    assert {rev.commit_hash for rev in cached[repo.repo_id].revisions} == {repo.sha}
    assert httpx.get(_url(srv, started["id"])).json()["status"] == "completed"
    assert started["id"] in [d["id"] for d in httpx.get(f"{srv.base_url}/api/downloads").json()["data"]]

    client = openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    assert repo.repo_id in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(
        model=repo.repo_id, messages=[{"role": "user", "content": "Hello"}], max_tokens=4
    )
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage and reply.usage.completion_tokens > 0


def test_a_model_already_in_the_cache_completes_at_once(srv: ServerProcess, hub: LoopbackHub) -> None:
    repo_id = "mlx-community/tiny-qwen2.5"
    first = _start(srv, repo_id)
    wait_for(_url(srv, first["id"]), lambda d: d["status"] == "completed", what="the first download")
    hub.reset()
    again = _start(srv, repo_id)
    assert again["status"] == "completed" and again["downloaded_bytes"] == again["total_bytes"]
    assert hub.ranges(repo_id, SAFETENSORS) == []  # not a byte fetched


def test_pause_keeps_the_partial_file_and_resume_continues_with_a_range_request(
    srv: ServerProcess, hub: LoopbackHub, cache: Path
) -> None:
    repo = hub.repos["mlx-community/tiny-qwen3"]
    hub.throttle(400_000)
    started = _start(srv, repo.repo_id)
    wait_for(_url(srv, started["id"]), lambda d: d["downloaded_bytes"] > 300_000, what="300 kB")
    paused = httpx.post(_url(srv, started["id"], "/pause")).json()
    assert paused["status"] == "paused"
    parts = partial_files(cache, repo.repo_id)  # pause answers once the transfer has stopped
    assert len(parts) == 1 and parts[0].stat().st_size > 250_000
    stopped_at = parts[0].stat().st_size
    time.sleep(0.5)
    assert parts[0].stat().st_size == stopped_at
    assert httpx.get(_url(srv, started["id"])).json()["downloaded_bytes"] == paused["downloaded_bytes"]

    hub.throttle(None)
    assert httpx.post(_url(srv, started["id"], "/resume")).json()["status"] in ("queued", "downloading")
    done = wait_for(_url(srv, started["id"]), lambda d: d["status"] == "completed", what="completion")
    assert done["downloaded_bytes"] == done["total_bytes"]
    ranges = hub.ranges(repo.repo_id, SAFETENSORS)
    assert ranges[0] is None and ranges[-1] == f"bytes={stopped_at}-", ranges  # from where it stopped
    assert_snapshot_matches(cache, repo)
    assert not partial_files(cache, repo.repo_id)


def test_cancel_removes_the_partial_files(srv: ServerProcess, hub: LoopbackHub, cache: Path) -> None:
    repo_id = "mlx-community/tiny-mistral"
    hub.throttle(300_000)
    started = _start(srv, repo_id)
    wait_for(_url(srv, started["id"]), lambda d: d["downloaded_bytes"] > 100_000, what="100 kB")
    assert partial_files(cache, repo_id)
    cancelled = httpx.post(_url(srv, started["id"], "/cancel")).json()
    assert cancelled["status"] == "cancelled"
    assert not partial_files(cache, repo_id)
    assert not (cache / "models--mlx-community--tiny-mistral").exists()  # nothing of it was kept
    assert all(i.file_path.parent.parent.name != "models--mlx-community--tiny-mistral" for i in _incomplete(cache))
    again = httpx.post(_url(srv, started["id"], "/resume"))
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "invalid_download_state"


def _incomplete(cache: Path) -> list[Any]:
    return list(scan_cache_dir(cache).incomplete_files)


def test_a_dropped_connection_is_resumed_to_a_verified_file(srv: ServerProcess, hub: LoopbackHub, cache: Path) -> None:
    repo = hub.repos["mlx-community/tiny-gemma3"]
    hub.drop_after(700_000, times=2, pattern=SAFETENSORS)  # two drops in a row, then a clean transfer
    started = _start(srv, repo.repo_id)
    done = wait_for(_url(srv, started["id"]), lambda d: d["status"] in ("completed", "failed"), what="the end")
    assert done["status"] == "completed", done["error"]
    ranges = hub.ranges(repo.repo_id, SAFETENSORS)
    assert ranges[0] is None and ranges[1:] == ["bytes=700000-", "bytes=1400000-"], ranges
    assert_snapshot_matches(cache, repo)


def test_corrupt_bytes_are_fetched_again_and_never_reach_the_snapshot(
    srv: ServerProcess, hub: LoopbackHub, cache: Path
) -> None:
    repo = hub.repos["mlx-community/tiny-glm4"]
    hub.corrupt(times=1, pattern=SAFETENSORS)  # once: the second copy is right
    started = _start(srv, repo.repo_id)
    done = wait_for(_url(srv, started["id"]), lambda d: d["status"] in ("completed", "failed"), what="the end")
    assert done["status"] == "completed", done["error"]
    assert len(hub.ranges(repo.repo_id, SAFETENSORS)) == 2
    assert_snapshot_matches(cache, repo)

    bad = hub.repos["mlx-community/tiny-deepseek-r1"]
    hub.corrupt(times=100, pattern=SAFETENSORS)  # always: the download must fail, keeping nothing corrupt
    started = _start(srv, bad.repo_id)
    failed = wait_for(_url(srv, started["id"]), lambda d: d["status"] in ("completed", "failed"), what="the end")
    assert failed["status"] == "failed" and "checksum mismatch" in failed["error"] and SAFETENSORS in failed["error"]
    repo_dir = cache / "models--mlx-community--tiny-deepseek-r1"
    assert not (repo_dir / "snapshots").exists()
    assert not (repo_dir / "blobs" / bad.files[SAFETENSORS].sha256).exists() and not partial_files(cache, bad.repo_id)
    hub.reset()
    retried = httpx.post(_url(srv, started["id"], "/resume")).json()  # a failed download can be retried
    assert retried["status"] in ("queued", "downloading") and retried["error"] is None
    wait_for(_url(srv, started["id"]), lambda d: d["status"] == "completed", what="the retry")
    assert_snapshot_matches(cache, bad)


def test_one_download_per_repository_at_a_time(srv: ServerProcess, hub: LoopbackHub) -> None:
    repo_id = "mlx-community/tiny-gpt-oss"
    hub.throttle(200_000)
    first = _start(srv, repo_id)
    second = httpx.post(f"{srv.base_url}/api/downloads", json={"repo_id": repo_id})
    assert second.status_code == 409 and second.headers["content-type"] == "application/problem+json"
    problem = second.json()
    assert problem["code"] == "download_in_progress" and problem["download_id"] == first["id"]
    assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == 409
    other = _start(srv, "mlx-community/tiny-phi4")  # another repository downloads alongside
    assert other["status"] in ("queued", "downloading")
    for download in (first, other):
        assert httpx.delete(_url(srv, download["id"])).status_code == 204  # cancels and forgets
        assert httpx.get(_url(srv, download["id"])).status_code == 404


def test_deleting_a_local_model_removes_it_from_the_cache_and_the_model_list(
    srv: ServerProcess, hub: LoopbackHub, cache: Path
) -> None:
    repo_id = "mlx-community/tiny-llama-4bit"
    started = _start(srv, repo_id)
    wait_for(_url(srv, started["id"]), lambda d: d["status"] == "completed", what="the download")
    models = lambda: [m["id"] for m in httpx.get(f"{srv.base_url}/v1/models").json()["data"]]  # noqa: E731
    assert repo_id in models()
    r = httpx.delete(f"{srv.base_url}/api/hub/local/{repo_id}")
    assert r.status_code == 200 and r.json()["freed_bytes"] == started["total_bytes"]
    assert not (cache / "models--mlx-community--tiny-llama-4bit").exists()
    assert repo_id not in models()
    missing = httpx.delete(f"{srv.base_url}/api/hub/local/{repo_id}")
    assert missing.status_code == 404 and missing.json()["code"] == "local_model_not_found"


def test_unknown_downloads_and_repositories_are_problems(srv: ServerProcess) -> None:
    for method, path in [
        ("GET", "/api/downloads/nope"),
        ("POST", "/api/downloads/nope/pause"),
        ("GET", "/api/downloads/nope/events"),
    ]:
        r = httpx.request(method, f"{srv.base_url}{path}")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text
        assert r.json()["code"] == "download_not_found"
    r = httpx.post(f"{srv.base_url}/api/downloads", json={"repo_id": "mlx-community/no-such-model"}, timeout=30)
    assert r.status_code == 404 and r.json()["code"] == "repo_not_found"
    r = httpx.post(f"{srv.base_url}/api/downloads", json={"repo_id": "../../etc"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    r = httpx.post(
        f"{srv.base_url}/api/downloads", json={"repo_id": "mlx-community/tiny-llama", "allow_patterns": ["*.gguf"]}
    )
    assert r.status_code == 400 and r.json()["code"] == "no_files"


def test_allow_patterns_fetch_only_the_matching_files(srv: ServerProcess, hub: LoopbackHub, cache: Path) -> None:
    repo_id = "someone-else/tiny-llama"
    started = _start(srv, repo_id, allow_patterns=["*.json"])
    done = wait_for(_url(srv, started["id"]), lambda d: d["status"] == "completed", what="the download")
    assert {f["path"] for f in done["files"]} == {p for p in hub.repos[repo_id].files if p.endswith(".json")}
    folder = cache / "models--someone-else--tiny-llama" / "snapshots" / hub.repos[repo_id].sha
    assert sorted(p.name for p in folder.iterdir()) == sorted(f["path"] for f in done["files"])
    assert (
        hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
        == hub.repos[repo_id].files["config.json"].sha256
    )
