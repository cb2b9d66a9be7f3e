"""schemathesis against the server's own OpenAPI, valid and invalid inputs: no 5xx, and every 4xx in the shape of
the API it came from (RFC 7807 problem details on the manager's /api routes)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from mlx_manager.testing.server import ServerProcess

EXAMPLES = 25  # per operation and mode; random model names never match a model, so this stays quick


def _shape_ok(path: str, body: Any) -> bool:
    if path.startswith("/api/"):
        return {"type", "title", "status", "detail", "instance"} <= set(body)
    if path.startswith(("/v1/messages", "/anthropic/")):
        return body.get("type") == "error" and {"type", "message"} <= set(body.get("error", {}))
    return {"message", "type"} <= set(body.get("error", {}))


def _operations(server: ServerProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    # Deletes would remove what other tests use, and a registration would make the shared server's first admin
    # (then /admin needs a key); the rest is fair game.
    kept = schema.exclude(method="DELETE").exclude(path="/api/auth/register")
    return [r.ok() for r in kept.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_a_5xx_and_errors_keep_their_apis_shape(server: ServerProcess, mode: GenerationMode) -> None:
    operations = _operations(server)
    assert len(operations) >= 15
    seen: dict[str, set[int]] = {}
    for operation in operations:
        label = operation.label

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            response = case.call(timeout=60)
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            if response.status_code == 503 and case.path.startswith(("/api/hub", "/api/downloads")):
                # This server is offline (HF_HUB_OFFLINE=1): the hub's routes say so, as a problem.
                assert response.json()["code"] == "hub_offline", response.text[:300]
                return
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
            if 400 <= response.status_code < 500:
                content_type = (response.headers.get("content-type") or [""])[0]
                assert content_type.startswith(("application/json", "application/problem+json")), response.text[:200]
                assert _shape_ok(case.path, response.json()), (case.path, response.text[:300])

        try:
            call()
        except Unsatisfiable:  # nothing invalid can be said to an operation without inputs (GET /health)
            assert mode == GenerationMode.NEGATIVE
            seen.setdefault(label, set())
    assert len(seen) == len(operations)
    if mode == GenerationMode.NEGATIVE:
        assert sum(bool(codes) for codes in seen.values()) >= 10
