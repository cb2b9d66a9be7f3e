"""Issue #12, finding 10, through a real server: `n` above what a model can ever hold is a 400 (not a 429
forever), a JSON Schema no value matches is a 400 (not dropped), and a catastrophic routing regex gives up
instead of stalling the event loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, login, register

HI = [{"role": "user", "content": "hi"}]


def test_n_above_what_the_model_can_ever_hold_is_a_400_and_up_to_it_runs(one_slot_server: ServerProcess) -> None:
    url = f"{one_slot_server.base_url}/v1/chat/completions"
    body = {"model": "tiny-llama", "messages": HI, "max_tokens": 2}
    too_many = httpx.post(url, json={**body, "n": 3}, timeout=60)
    assert too_many.status_code == 400, too_many.text
    error = too_many.json()["error"]
    assert error["param"] == "n" and "max_num_seqs" in error["message"] and "max_waiting" in error["message"]
    fits = httpx.post(url, json={**body, "n": 2}, timeout=60)  # one runs, one waits: was a 429 every time
    assert fits.status_code == 200 and len(fits.json()["choices"]) == 2, fits.text


UNSATISFIABLE: list[Any] = [
    {"$ref": "#"},
    {"$defs": {"x": {"$ref": "#/$defs/y"}, "y": {"$ref": "#/$defs/x"}}, "$ref": "#/$defs/x"},
]


@pytest.mark.parametrize("schema", UNSATISFIABLE, ids=["self", "loop"])
@pytest.mark.parametrize("model", ["tiny-llama", "tiny-qwen3"])  # without and with a reasoning frame
def test_a_schema_no_value_matches_is_a_400(server: ServerProcess, schema: Any, model: str) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    body = {"model": model, "messages": HI, "max_tokens": 64, "response_format": fmt}
    resp = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["error"]["param"] == "response_format" and "cannot be satisfied" in resp.text
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    forced = {"model": model, "messages": HI, "max_tokens": 64, "tools": [tool], "tool_choice": "required"}
    resp = httpx.post(f"{server.base_url}/v1/chat/completions", json=forced, timeout=60)
    assert resp.status_code == 400 and "tool 'f'" in resp.json()["error"]["message"], resp.text[:300]
    anthropic = {
        "model": model,
        "messages": HI,
        "max_tokens": 8,
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }
    resp = httpx.post(f"{server.base_url}/v1/messages", json=anthropic, timeout=60)
    assert resp.status_code == 400 and "cannot be satisfied" in resp.json()["error"]["message"], resp.text[:300]


def test_a_catastrophic_routing_regex_does_not_stall_the_server(tiny_models_dir: Path, tmp_path: Path) -> None:
    with run_server(tmp_path, ["--model-dir", str(tiny_models_dir)]) as srv:
        register(srv, "root")
        admin = Api(srv, login(srv, "root"))
        local = admin.ok("POST", "/api/routing/backends", 201, json={"name": "here", "kind": "local"})["id"]
        rule = {"pattern": "(a|aa)+b", "match_type": "regex", "backend_ids": [local], "remote_model": "tiny-llama"}
        admin.ok("POST", "/api/routing/rules", 201, json=rule)
        name = "a" * 60  # 2^60 ways to split it: `re` would never finish

        async def main() -> tuple[httpx.Response, list[float]]:
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=20) as http:
                body = {"model": name, "messages": HI, "max_tokens": 2}
                asks = [asyncio.create_task(http.post("/v1/chat/completions", json=body)) for _ in range(4)]
                waits = []
                for _ in range(5):
                    started = time.monotonic()
                    assert (await http.get("/health")).status_code == 200
                    waits.append(time.monotonic() - started)
                return (await asyncio.gather(*asks))[0], waits

        answer, waits = asyncio.run(main())
        assert answer.status_code == 404, answer.text  # no rule matched: the local engine has no such model
        assert max(waits) < 5, waits  # a sanity bound: each match gives up after 20 ms
        assert admin.ok("GET", "/api/routing/test", params={"model": name})["backends"] == ["local"]
        assert "gave up after 20 ms" in srv.log()
        # A pattern that matches still routes.
        assert admin.ok("GET", "/api/routing/test", params={"model": "aab"})["upstream_model"] == "tiny-llama"
