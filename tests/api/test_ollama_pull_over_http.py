"""Ollama's pull, delete and auth on a server with accounts, downloading from the loopback hub: progress objects
per file by digest, the pulled model chats and is deleted again; pull, delete and copy need an admin; API keys
as Bearer; every request in the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from mlx_manager.testing.hub_server import LoopbackHub, serve_hub
from mlx_manager.testing.server import ServerProcess
from tests.api.accounts import Api, approved_user, bearer, eventually, new_key, register, signed_in
from tests.api.hub_helpers import assert_snapshot_matches, hub_repos, hub_server

REPO = "mlx-community/tiny-llama"
MSG = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def hub(tiny_models: dict[str, Path]) -> Iterator[LoopbackHub]:
    with serve_hub(hub_repos(tiny_models)) as loopback:
        yield loopback


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ollama-pull")


@pytest.fixture(scope="module")
def srv(hub: LoopbackHub, home: Path) -> Iterator[ServerProcess]:
    with hub_server(home, hub) as server:
        yield server


@pytest.fixture(scope="module")
def admin(srv: ServerProcess) -> Api:
    register(srv, "admin")
    return signed_in(srv, "admin")


@pytest.fixture(scope="module")
def admin_client(srv: ServerProcess, admin: Api) -> ollama.Client:
    return ollama.Client(host=srv.base_url, headers=bearer(new_key(admin, "ollama")), timeout=120)


def test_pull_streams_progress_by_digest_then_the_model_chats_and_delete_removes_it(
    srv: ServerProcess, hub: LoopbackHub, home: Path, admin_client: ollama.Client
) -> None:
    repo = hub.repos[REPO]
    hub.throttle(4_000_000)  # ~0.6 s: several progress objects for the weights
    try:
        steps = list(admin_client.pull(REPO, stream=True))
    finally:
        hub.throttle(None)
    assert steps[0].status == "pulling manifest" and steps[-1].status == "success"
    weights = repo.files["model.safetensors"]
    seen = [s.completed for s in steps if s.digest == f"sha256:{weights.sha256}"]
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] == weights.size, seen
    assert {s.total for s in steps if s.digest == f"sha256:{weights.sha256}"} == {weights.size}
    assert all(s.status == f"pulling {s.digest[7:19]}" for s in steps if s.digest)
    assert_snapshot_matches(home / "hf-cache", repo)

    assert REPO in {m.model for m in admin_client.list().models}
    out = admin_client.chat(model=REPO, messages=MSG, options={"num_predict": 3})
    assert out.done and out.eval_count == 3
    assert REPO in {m.model for m in admin_client.ps().models}

    again = admin_client.pull(REPO)  # already here: at once, not streamed
    assert again.status == "success"

    admin_client.delete(REPO)
    assert REPO not in {m.model for m in admin_client.list().models}
    assert not (home / "hf-cache" / f"models--{REPO.replace('/', '--')}").exists()
    with pytest.raises(ollama.ResponseError) as err:
        admin_client.chat(model=REPO, messages=MSG)
    assert err.value.status_code == 404


def test_pull_errors_are_ollamas(admin_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        admin_client.pull("mlx-community/no-such-repo")
    assert err.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as err:
        admin_client.pull("llama3:8b")  # an Ollama library name: not a Hugging Face repo id
    assert err.value.status_code == 400 and "Hugging Face repo id" in err.value.error


def test_pull_delete_and_copy_need_an_admin_and_chat_takes_user_keys(srv: ServerProcess, admin: Api) -> None:
    base = srv.base_url
    user_key = new_key(approved_user(admin, "someone"), "theirs")
    for path, body in (("/api/pull", {"model": REPO}), ("/api/copy", {"source": "a", "destination": "b"})):
        anonymous = httpx.post(f"{base}{path}", json=body, timeout=30)
        assert anonymous.status_code == 401 and set(anonymous.json()) == {"error"}, anonymous.text
        user = httpx.post(f"{base}{path}", json=body, headers=bearer(user_key), timeout=30)
        assert user.status_code == 403 and set(user.json()) == {"error"}, user.text
    forbidden = httpx.request("DELETE", f"{base}/api/delete", json={"model": REPO}, headers=bearer(user_key))
    assert forbidden.status_code == 403

    as_user = ollama.Client(host=base, headers=bearer(user_key), timeout=120)
    admin.ok("PATCH", "/api/settings", json={"require_api_key": True})
    try:
        with pytest.raises(ollama.ResponseError) as err:
            ollama.Client(host=base, timeout=30).list()
        assert err.value.status_code == 401
        revoked = ollama.Client(host=base, headers=bearer("mlxm-not-a-key"), timeout=30)
        with pytest.raises(ollama.ResponseError):
            revoked.list()
        assert as_user.list().models is not None
    finally:
        admin.ok("PATCH", "/api/settings", json={"require_api_key": False})


def test_ollama_requests_are_audited_with_the_caller_and_tokens(
    srv: ServerProcess, hub: LoopbackHub, admin: Api, admin_client: ollama.Client
) -> None:
    admin_client.pull("mlx-community/tiny-qwen3", stream=False)
    admin_client.generate(model="mlx-community/tiny-qwen3", prompt="audited", options={"num_predict": 2})
    admin_id = admin.ok("GET", "/api/auth/me")["id"]

    def entries(endpoint: str) -> list[dict[str, object]]:
        items: list[dict[str, object]] = admin.ok("GET", "/api/audit", params={"endpoint": endpoint})["items"]
        return items

    generated = eventually(lambda: entries("/api/generate"))[0]
    assert generated["model"] == "mlx-community/tiny-qwen3" and generated["completion_tokens"] == 2
    assert generated["user_id"] == admin_id and generated["status"] == 200
    pulled = eventually(lambda: entries("/api/pull"))[0]
    assert pulled["model"] == "mlx-community/tiny-qwen3" and pulled["user_id"] == admin_id
