"""Browser-borne requests (issue #12, finding 9): a DNS-rebound Host name is refused, a state-changing request
from another site (Origin, else Referer) is a 403 unless its origin is in cors_origins, and a form or text body
is a 415; each in its API's own error shape, and non-browser clients (no Origin) unaffected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def configured(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"MLX_MANAGER_ALLOWED_HOSTS": "llm.lan, models.example", "MLX_MANAGER_CORS_ORIGINS": "http://app.example"}
    with run_server(tmp_path_factory.mktemp("guard"), ["--model-dir", str(tiny_models_dir)], env=env) as srv:
        yield srv


def shape(path: str, resp: httpx.Response) -> str:
    """The error's message, after checking it is in the API's own shape for `path`."""
    body = resp.json()
    if path.startswith("/api"):
        assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
        return str(body["detail"])
    if path.startswith("/anthropic") or path.startswith("/v1/messages"):
        assert body["type"] == "error", body
    return str(body["error"]["message"])


@pytest.mark.parametrize("path", ["/admin/models", "/api/auth/status", "/v1/models", "/anthropic/v1/models", "/"])
def test_a_rebound_host_name_is_refused(server: ServerProcess, path: str) -> None:
    port = server.port
    resp = httpx.get(f"{server.base_url}{path}", headers={"Host": f"evil.example:{port}"})
    assert resp.status_code == 400, resp.text
    if path != "/":
        assert "evil.example" in shape(path, resp) and "allowed_hosts" in shape(path, resp)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert httpx.get(f"{server.base_url}{path}", headers={"Host": host}).status_code == 200, host
    # Load balancers probe /health by address or service name.
    assert httpx.get(f"{server.base_url}/health", headers={"Host": "evil.example"}).status_code == 200


def test_configured_host_names_are_served(configured: ServerProcess) -> None:
    for host, status in (("llm.lan", 200), (f"models.example:{configured.port}", 200), ("evil.example", 400)):
        resp = httpx.get(f"{configured.base_url}/v1/models", headers={"Host": host})
        assert resp.status_code == status, (host, resp.text)


def test_a_star_serves_any_host(tiny_models_dir: Path, tmp_path: Path) -> None:
    env = {"MLX_MANAGER_ALLOWED_HOSTS": "*"}
    with run_server(tmp_path, ["--model-dir", str(tiny_models_dir)], env=env) as srv:
        assert httpx.get(f"{srv.base_url}/v1/models", headers={"Host": "anything.example"}).status_code == 200


def test_a_cross_site_form_post_to_load_a_model_is_refused(configured: ServerProcess) -> None:
    server = configured  # its own server: no other test here loads tiny-qwen3
    url = f"{server.base_url}/admin/models/tiny-qwen3/load"
    form = {"content-type": "application/x-www-form-urlencoded"}
    # What a page on another site sends with <form method=post>: refused, and nothing loads.
    for headers in ({"Origin": EVIL, **form}, {"Origin": EVIL}, {"Referer": f"{EVIL}/page.html", **form}):
        resp = httpx.post(url, headers=headers, content=b"x=1" if "content-type" in headers else None)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["code"] == "cross_site_request" and EVIL in resp.json()["error"]["message"]
    assert "tiny-qwen3" not in [m["id"] for m in httpx.get(f"{server.base_url}/admin/models").json()["data"]]
    # Without an Origin (curl, SDKs) a form body is still no JSON: 415.
    resp = httpx.post(url, headers=form, content=b"x=1")
    assert resp.status_code == 415 and resp.json()["error"]["code"] == "unsupported_media_type", resp.text
    # The server's own UI (same origin) and clients without an Origin may.
    assert httpx.post(url, headers={"Origin": server.base_url}).status_code == 200
    assert httpx.post(f"{server.base_url}/admin/models/tiny-qwen3/unload").status_code == 200


def test_an_origin_in_cors_origins_may_post(configured: ServerProcess) -> None:
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    url = f"{configured.base_url}/v1/chat/completions"
    allowed = httpx.post(url, json=body, headers={"Origin": "http://app.example"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == "http://app.example"
    refused = httpx.post(url, json=body, headers={"Origin": "http://app.example:8443"})
    assert refused.status_code == 403, refused.text


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("/v1/chat/completions", "text/plain"),
        ("/v1/messages", "multipart/form-data; boundary=x"),
        ("/api/auth/login", "application/x-www-form-urlencoded"),
        ("/v1/embeddings", "application/octet-stream"),
    ],
)
def test_a_body_that_is_not_json_is_a_415_in_each_apis_shape(server: ServerProcess, path: str, media: str) -> None:
    resp = httpx.post(f"{server.base_url}{path}", headers={"content-type": media}, content=b'{"model": "tiny-llama"}')
    assert resp.status_code == 415, resp.text
    assert "application/json" in shape(path, resp) and media.split(";")[0] in shape(path, resp)
    ok = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        headers={"content-type": "application/json; charset=utf-8"},
        content=b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}',
    )
    assert ok.status_code == 200, ok.text
