"""How the server answers for the UI: files, client routes, the API prefixes left alone, the CSP, no build."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mlx_manager.api.web import RESERVED, WebUI

INLINE = "console.log('boot')"
INDEX = (
    '<!doctype html><html><head><script type="module" src="/_app/x.js"></script></head>'
    f"<body><script>{INLINE}</script></body></html>"
)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    (tmp_path / "_app" / "immutable").mkdir(parents=True)
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "_app" / "immutable" / "a.js").write_text("export {}")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    app = Starlette()
    app.mount("/", WebUI(tmp_path))
    return TestClient(app, raise_server_exceptions=False)


def test_client_routes_get_index_with_the_inline_script_hash(client: TestClient) -> None:
    digest = base64.b64encode(hashlib.sha256(INLINE.encode()).digest()).decode()
    for path in ("/", "/chat", "/models/some/deep/route", "/login"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.text == INDEX
        assert r.headers["content-type"].startswith("text/html")
        assert f"script-src 'self' 'sha256-{digest}'" in r.headers["content-security-policy"]


def test_files_are_served_and_immutable_ones_cached(client: TestClient) -> None:
    r = client.get("/_app/immutable/a.js")
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
    assert client.get("/favicon.svg").status_code == 200
    assert client.get("/_app/immutable/missing.js").status_code == 404
    assert client.get("/../pyproject.toml").status_code in (200, 404)  # never outside the build folder
    assert "pyproject" not in client.get("/..%2Fpyproject.toml").text


def test_api_prefixes_and_other_methods_are_not_the_ui(client: TestClient) -> None:
    for prefix in RESERVED:
        assert client.get(prefix + "/nothing").status_code == 404, prefix
    assert client.post("/chat").status_code == 404


def test_missing_build_answers_how_to_build(tmp_path: Path) -> None:
    app = Starlette()
    app.mount("/", WebUI(tmp_path / "nothing-here"))
    r = TestClient(app).get("/")
    assert r.status_code == 200
    assert "npm run build" in r.text


def test_a_route_with_another_method_is_still_405() -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def change(_: object) -> PlainTextResponse:
        return PlainTextResponse("changed")

    app = Starlette(routes=[Route("/api/thing", change, methods=["PATCH"])])
    app.mount("/", WebUI(Path("/nonexistent")))
    client = TestClient(app)
    assert client.get("/api/thing").status_code == 405
    assert client.patch("/api/thing").text == "changed"
    assert client.get("/api/other").status_code == 404
