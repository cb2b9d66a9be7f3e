"""schemathesis against the server's own OpenAPI, valid and invalid inputs: no 5xx, and every 4xx in the shape of
the API it came from (RFC 7807 problem details on the manager's /api routes) with the request's id in it.

Two runs: every operation anonymously on the shared server (no accounts: the model APIs and /admin are open), and
the /api and /admin operations signed in as the admin of a server with accounts, with real ids of profiles,
backends, rules, credentials, keys, users and models swapped into half of the valid cases."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from mlx_manager.api.ollama.errors import is_ollama_path
from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import PASSWORD, Api, bearer, register, signed_in

# Per operation and mode; every operation of both runs is still fuzzed in both modes. Past ~10 the cases mostly
# repeat the same 404 / 400 (random model names, ids), each a body to generate and a request to answer.
EXAMPLES = 10
SIGNED_IN_EXAMPLES = 10


def _request_id(path: str, body: Any) -> Any:
    if path.startswith("/api/") or path.startswith(("/v1/messages", "/anthropic/")):
        return body.get("request_id")
    return body.get("error", {}).get("request_id")


def _shape_ok(path: str, body: Any) -> bool:
    if is_ollama_path(path):  # Ollama's {"error": "..."}; the id is in the X-Request-ID header only
        return set(body) == {"error"} and isinstance(body["error"], str)
    if path.startswith("/api/"):
        return {"type", "title", "status", "detail", "instance"} <= set(body)
    if path.startswith(("/v1/messages", "/anthropic/")):
        return body.get("type") == "error" and {"type", "message"} <= set(body.get("error", {}))
    return {"message", "type"} <= set(body.get("error", {}))


def _check(case: Any, response: Any) -> None:
    """No 5xx (but the offline hub's 503), and 4xx bodies in their API's shape with the X-Request-ID."""
    if response.status_code == 503 and case.path.startswith(("/api/hub", "/api/downloads")):
        # These servers are offline (HF_HUB_OFFLINE=1): the hub's routes say so, as a problem.
        assert response.json()["code"] == "hub_offline", response.text[:300]
        return
    assert response.status_code < 500, (case.method, case.path, case.path_parameters, case.body, response.text[:500])
    if 400 <= response.status_code < 500:
        content_type = (response.headers.get("content-type") or [""])[0]
        assert content_type.startswith(("application/json", "application/problem+json")), response.text[:200]
        body = response.json()
        assert _shape_ok(case.path, body), (case.path, response.text[:300])
        request_id = (response.headers.get("x-request-id") or [""])[0]
        assert request_id, (case.path, response.text[:300])
        if not is_ollama_path(case.path):
            assert _request_id(case.path, body) == request_id, (case.path, response.text[:300])


def _fuzz(
    operations: list[Any],
    mode: GenerationMode,
    examples: int,
    send: Callable[[Any, bool], Any],
) -> dict[str, set[int]]:
    """Each operation's cases through `send(case, swap)` (`swap`: a coin the run may use), checked; the statuses seen
    per operation."""
    seen: dict[str, set[int]] = {}
    for operation in operations:
        label = operation.label

        @given(case=operation.as_strategy(generation_mode=mode), swap=st.booleans())
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case: Any, swap: bool) -> None:
            response = send(case, swap)
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            _check(case, response)

        try:
            call()
        except Unsatisfiable:  # nothing invalid can be said to an operation without inputs (GET /health)
            assert mode == GenerationMode.NEGATIVE
            seen.setdefault(label, set())
    return seen


def _operations(server: ServerProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    # Deletes would remove what other tests use, and a registration would make the shared server's first admin
    # (then /admin needs a key); the rest is fair game.
    kept = schema.exclude(method="DELETE").exclude(path="/api/auth/register")
    kept = kept.exclude(path="/api/copy").exclude(path="/api/pull")  # an alias, a download: state others would see
    # Before the first account the admin routes are open on loopback (api/security.py): new users, settings or
    # rules would change the shared server for other tests too (the signed-in run below covers them).
    kept = kept.exclude(path_regex=r"^/api/(users|routing|settings|profiles|audit)")
    return [r.ok() for r in kept.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_a_5xx_and_errors_keep_their_apis_shape(server: ServerProcess, mode: GenerationMode) -> None:
    operations = _operations(server)
    assert len(operations) >= 15
    seen = _fuzz(operations, mode, EXAMPLES, lambda case, _swap: case.call(timeout=60))
    assert len(seen) == len(operations)
    if mode == GenerationMode.NEGATIVE:
        assert sum(bool(codes) for codes in seen.values()) >= 10


# --- signed in: /api and /admin with real ids -----------------------------------------------------------


@pytest.fixture(scope="module")
def accounts_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Its own server: the fuzzer creates users, rules and settings there that other tests must not see."""
    with run_server(tmp_path_factory.mktemp("fuzz-accounts"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


@pytest.fixture(scope="module")
def fuzz_admin(accounts_server: ServerProcess) -> Api:
    register(accounts_server, "admin")
    return signed_in(accounts_server, "admin")


class LiveIds:
    """An id that exists now for each kind of path parameter: an existing row, else one made for the purpose (the
    fuzzer deletes rows too)."""

    def __init__(self, admin: Api) -> None:
        self.admin = admin
        self.me: int = admin.ok("GET", "/api/auth/me")["id"]
        self.names = (f"fuzz-{uuid.uuid4().hex[:12]}" for _ in itertools.count())  # never a fuzzer's name

    def _first(self, listing: str, path: str, body: Callable[[], dict[str, Any]]) -> int:
        rows = self.admin.ok("GET", listing)
        return int(rows[0]["id"]) if rows else int(self.admin.ok("POST", path, 201, json=body())["id"])

    def profile(self) -> int:
        return self._first("/api/profiles", "/api/profiles", lambda: {"name": next(self.names), "model": "tiny-llama"})

    def backend(self) -> int:
        backends = "/api/routing/backends"
        return self._first(backends, backends, lambda: {"name": next(self.names), "kind": "local"})

    def rule(self) -> int:
        rules = "/api/routing/rules"
        return self._first(rules, rules, lambda: {"pattern": next(self.names), "backend_ids": [self.backend()]})

    def credential(self) -> int:
        creds = "/api/routing/credentials"
        return self._first(creds, creds, lambda: {"name": next(self.names), "provider": "openai", "secret": "s"})

    def key(self) -> int:
        return self._first("/api/keys", "/api/keys", lambda: {"name": next(self.names)})

    def user(self) -> int:
        """Anyone but the signed-in admin; a new user is made without signing in (failed logins of the fuzzer may
        have the login rate limit refuse this address by then)."""
        others = [u["id"] for u in self.admin.ok("GET", "/api/users") if u["id"] != self.me]
        if others:
            return int(others[0])
        account = {"username": next(self.names), "password": PASSWORD}
        made = self.admin.post("/api/users", json=account)  # an admin adds an approved user
        if made.status_code != 201:  # no such route: register, then approve
            made = self.admin.post("/api/auth/register", json=account)
            self.admin.ok("POST", f"/api/users/{made.json()['id']}/approve")
        return int(made.json()["id"])

    def for_param(self, name: str) -> int | str | None:
        makers: dict[str, Callable[[], int | str]] = {
            "profile_id": self.profile,
            "backend_id": self.backend,
            "rule_id": self.rule,
            "credential_id": self.credential,
            "key_id": self.key,
            "user_id": self.user,
            "model_id": lambda: "tiny-llama",
        }
        maker = makers.get(name)
        return maker() if maker else None


ID_OPERATIONS = [  # each must answer 2xx at least once: real ids reach the code behind the 404s and 400s
    "GET /api/profiles/{profile_id}",
    "PATCH /api/profiles/{profile_id}",
    "POST /api/profiles/{profile_id}/duplicate",
    "PATCH /api/routing/backends/{backend_id}",
    "PATCH /api/routing/rules/{rule_id}",
    "POST /api/routing/rules",
    "PATCH /api/users/{user_id}",
    "POST /api/users/{user_id}/approve",
    "DELETE /api/keys/{key_id}",
    "POST /admin/models/{model_id}/load",
]


def _signed_in_operations(server: ServerProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    # Logging out would end the run's own session (401 for everything after). Operations on a user id never
    # target the signed-in admin (see `send`): suspending, demoting, deleting it or ending its sessions would too.
    kept = schema.include(path_regex=r"^/(api|admin)/").exclude(method="POST", path="/api/auth/logout")
    kept = kept.exclude(path_regex=r"^/api/(chat|generate|embed|embeddings|tags|show|ps|pull|delete|copy|version)$")
    return [r.ok() for r in kept.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_signed_in_admin_gets_no_5xx_from_any_api_or_admin_operation(
    accounts_server: ServerProcess, fuzz_admin: Api, mode: GenerationMode
) -> None:
    admin = fuzz_admin
    live = LiveIds(admin)
    operations = _signed_in_operations(accounts_server)
    assert len(operations) >= 30

    def send(case: Any, swap: bool) -> Any:
        if case.path.startswith("/api/users/{user_id}"):
            # Never the signed-in admin: suspending, demoting, deleting it or ending its sessions would end the run.
            if case.path_parameters.get("user_id") == live.me or swap:
                case.path_parameters["user_id"] = live.user()
        elif swap and mode == GenerationMode.POSITIVE:
            for name in list(case.path_parameters or {}):
                real = live.for_param(name)
                if real is not None:
                    case.path_parameters[name] = real
            if isinstance(case.body, dict) and case.body.get("backend_ids"):
                case.body["backend_ids"] = [live.backend()]
            if isinstance(case.body, dict) and case.body.get("credential_id") is not None:
                case.body["credential_id"] = live.credential()
        response = case.call(headers=bearer(admin.token or ""), timeout=60)
        if case.path == "/api/settings" and case.method == "PATCH":
            # Back to the configured settings: a 0-byte budget made up here must not make later loads a 507.
            admin.ok("PATCH", "/api/settings", json=dict.fromkeys(admin.ok("GET", "/api/settings")["overridden"]))
        return response

    seen = _fuzz(operations, mode, SIGNED_IN_EXAMPLES, send)
    assert len(seen) == len(operations)
    assert admin.ok("GET", "/api/auth/me")["is_admin"]  # still signed in, still the admin
    if mode == GenerationMode.POSITIVE:
        missed = [op for op in ID_OPERATIONS if not any(200 <= s < 300 for s in seen.get(op, ()))]
        assert not missed, {op: seen.get(op) for op in missed}
