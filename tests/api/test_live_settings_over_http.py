"""Pool settings changed through /api/settings act on the running pool at once (evictions, pins, idle unloads)
and are applied again at the next start, with the session secret and the audit retention."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, assert_problem, eventually, register, signed_in


def _chat(server: ServerProcess, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60)


def _pool(admin: Api) -> dict[str, Any]:
    pool: dict[str, Any] = admin.ok("GET", "/admin/models")
    return pool


def _loaded(admin: Api) -> dict[str, bool]:
    """Loaded model ids, each with whether it is pinned."""
    return {m["id"]: m["pinned"] for m in _pool(admin)["data"]}


def test_settings_apply_to_the_running_pool_and_again_after_a_restart(tiny_models_dir: Path, tmp_path: Path) -> None:
    args = ["--model-dir", str(tiny_models_dir)]
    with run_server(tmp_path, args) as server:
        register(server, "admin")
        admin = signed_in(server, "admin")
        before = admin.ok("GET", "/api/settings")
        assert before["max_models"] == 4 and before["overridden"] == [] and before["require_api_key"] is False

        # max_models 1: loading a second model evicts the first.
        assert _chat(server, "tiny-llama").status_code == 200
        assert admin.ok("PATCH", "/api/settings", json={"max_models": 1})["max_models"] == 1
        assert _pool(admin)["max_models"] == 1
        assert _chat(server, "tiny-qwen3").status_code == 200
        assert _loaded(admin) == {"tiny-qwen3": False}

        # Raising it again keeps both; lowering the memory budget below them evicts idle ones now.
        admin.ok("PATCH", "/api/settings", json={"max_models": 3})
        assert _chat(server, "tiny-llama").status_code == 200
        assert set(_loaded(admin)) == {"tiny-qwen3", "tiny-llama"}
        admin.ok("PATCH", "/api/settings", json={"memory_budget_bytes": 1})
        assert _loaded(admin) == {}
        refused = _chat(server, "tiny-llama")
        assert refused.status_code == 507 and "memory budget" in refused.json()["error"]["message"]
        admin.ok("PATCH", "/api/settings", json={"memory_budget_bytes": None})  # back to the configured budget
        assert _pool(admin)["memory_budget_bytes"] == before["memory_budget_bytes"]

        # preload: loaded and pinned in the background; taken off the list, unpinned.
        assert admin.ok("PATCH", "/api/settings", json={"preload": ["tiny-gemma3"]})["preload"] == ["tiny-gemma3"]
        eventually(lambda: _loaded(admin).get("tiny-gemma3"))
        admin.ok("PATCH", "/api/settings", json={"preload": []})
        assert _loaded(admin)["tiny-gemma3"] is False

        # idle_ttl_seconds: the reaper unloads idle models from now on.
        admin.ok("PATCH", "/api/settings", json={"idle_ttl_seconds": 0.5, "max_models": 2})
        eventually(lambda: _loaded(admin) == {} or None, timeout=15)
        admin.ok("PATCH", "/api/settings", json={"idle_ttl_seconds": None})

        for bad in ({"max_models": 0}, {"nope": 1}, {"preload": ["no-such-model"]}, {"audit_retention_days": -1}):
            assert_problem(admin.patch("/api/settings", json=bad), 400)
        assert admin.ok("GET", "/api/settings")["max_models"] == 2
        token = admin.token

    with sqlite3.connect(tmp_path / "mlx-manager.db") as db:
        # A saved preload naming a model that has gone since: the start goes on without it.
        db.execute("UPDATE settings SET value = '[\"deleted-model\", \"tiny-llama\"]' WHERE key = 'preload'")
        # An entry past the 30-day retention.
        db.execute(
            "INSERT INTO audit_log (time, request_id, method, endpoint, model, status, prompt_tokens,"
            " completion_tokens, latency_ms, backend) VALUES (?, 'req-old', 'GET', '/v1/models', '', 200, 0, 0, 1,"
            " 'local')",
            (time.time() - 31 * 86400,),
        )

    with run_server(tmp_path, args) as server:
        admin = Api(server, token)  # the session survives: its signing secret is in the database
        after = admin.ok("GET", "/api/settings")
        assert after["max_models"] == 2 and after["overridden"] == ["max_models", "preload"]
        assert _pool(admin)["max_models"] == 2
        eventually(lambda: _loaded(admin).get("tiny-llama"))  # loaded and pinned after the start
        assert "deleted-model" in server.log()

        # Pruned at start; the first run's entries are recent and stay.
        def request_ids() -> list[str]:
            return [e["request_id"] for e in admin.ok("GET", "/api/audit", params={"limit": 1000})["items"]]

        eventually(lambda: "req-old" not in request_ids())
        assert len(request_ids()) >= 4
