"""Hugging Face search and model details through the API (HfApi against the loopback hub), and what an offline
server answers instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlx_manager.testing.hub_server import LoopbackHub, serve_hub
from mlx_manager.testing.server import ServerProcess
from tests.api.hub_helpers import GIANT, hub_repos, hub_server


@pytest.fixture(scope="module")
def hub(tiny_models: dict[str, Path]) -> Iterator[LoopbackHub]:
    with serve_hub(hub_repos(tiny_models)) as loopback:
        yield loopback


@pytest.fixture(scope="module")
def srv(hub: LoopbackHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with hub_server(tmp_path_factory.mktemp("hub-home"), hub) as server:
        yield server


def test_search_lists_mlx_community_models_by_downloads_with_size_and_memory_fit(
    srv: ServerProcess, hub: LoopbackHub
) -> None:
    r = httpx.get(f"{srv.base_url}/api/hub/search", params={"limit": 50}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [m["id"] for m in body["data"]]
    assert all(i.startswith("mlx-community/") for i in ids) and "someone-else/tiny-llama" not in ids
    downloads = [m["downloads"] for m in body["data"]]
    assert downloads == sorted(downloads, reverse=True)
    assert body["memory_budget_bytes"] > 0 and body["available_memory_bytes"] >= 0
    by_id = {m["id"]: m for m in body["data"]}
    tiny = by_id["mlx-community/tiny-llama"]
    weights = hub.repos["mlx-community/tiny-llama"].files["model.safetensors"].size
    # float32 parameters x 4 bytes: the weights without the safetensors header
    assert tiny["size_source"] == "safetensors" and 0.95 * weights < tiny["size_bytes"] <= weights
    assert tiny["fits_in_memory"] is True and tiny["downloaded"] is False
    assert tiny["likes"] == hub.repos["mlx-community/tiny-llama"].likes and "mlx" in tiny["tags"]
    assert tiny["last_modified"].startswith("2025-01-01")
    giant = by_id[GIANT]
    assert giant["size_bytes"] == 200_000_000_000 and giant["fits_in_memory"] is False


def test_search_takes_a_query_an_author_a_sort_and_a_limit(srv: ServerProcess) -> None:
    get = lambda **p: httpx.get(f"{srv.base_url}/api/hub/search", params=p, timeout=30).json()["data"]  # noqa: E731
    assert [m["id"] for m in get(q="qwen3")] == ["mlx-community/tiny-qwen3"]
    assert [m["id"] for m in get(author="someone-else")] == ["someone-else/tiny-llama"]
    everyone = get(author="", q="tiny-llama")
    assert everyone[0]["id"] == "someone-else/tiny-llama" and len(everyone) == 3  # + tiny-llama, tiny-llama-4bit
    likes = [m["likes"] for m in get(sort="likes")]
    assert likes == sorted(likes, reverse=True)
    assert len(get(limit=2)) == 2
    bad = httpx.get(f"{srv.base_url}/api/hub/search", params={"limit": 0})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


def test_model_details_have_the_card_and_every_file_with_its_size(srv: ServerProcess, hub: LoopbackHub) -> None:
    repo = hub.repos["mlx-community/tiny-qwen3"]
    r = httpx.get(f"{srv.base_url}/api/hub/models/{repo.repo_id}", timeout=30)
    assert r.status_code == 200, r.text
    details = r.json()
    assert details["id"] == repo.repo_id and details["sha"] == repo.sha
    assert details["card"] == repo.files["README.md"].data.decode()
    files = {f["path"]: f for f in details["files"]}
    assert {p: f["size"] for p, f in files.items()} == {p: f.size for p, f in repo.files.items()}
    assert (
        files["model.safetensors"]["lfs"]
        and files["model.safetensors"]["sha256"] == repo.files["model.safetensors"].sha256
    )
    assert details["total_file_bytes"] == sum(f.size for f in repo.files.values())
    assert details["fits_in_memory"] is True and details["downloaded"] is False


def test_unknown_repositories_and_bad_names_are_problems(srv: ServerProcess) -> None:
    r = httpx.get(f"{srv.base_url}/api/hub/models/mlx-community/nothing-here", timeout=30)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "repo_not_found" and "mlx-community/nothing-here" in r.json()["detail"]
    r = httpx.get(f"{srv.base_url}/api/hub/models/mlx-community/tiny-qwen3", params={"revision": "v9"}, timeout=30)
    assert r.status_code == 404 and r.json()["code"] == "revision_not_found"
    r = httpx.get(f"{srv.base_url}/api/hub/models/a/b/c")
    assert r.status_code == 400 and r.json()["code"] == "invalid_repo_id"


def test_an_offline_server_says_search_and_downloads_need_the_hub(server: ServerProcess) -> None:
    """The shared server runs with HF_HUB_OFFLINE=1: a 503 problem that says so, never a 500."""
    calls = [
        ("GET", "/api/hub/search", None),
        ("GET", "/api/hub/models/mlx-community/tiny-llama", None),
        ("POST", "/api/downloads", {"repo_id": "mlx-community/tiny-llama"}),
    ]
    for method, path, body in calls:
        r = httpx.request(method, f"{server.base_url}{path}", json=body, timeout=30)
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json", r.text
        problem = r.json()
        assert problem["code"] == "hub_offline" and "HF_HUB_OFFLINE" in problem["detail"]
        assert {"type", "title", "status", "detail"} <= set(problem)
    listed = httpx.get(f"{server.base_url}/api/downloads")  # local state still answers
    assert listed.status_code == 200 and listed.json()["object"] == "list"
