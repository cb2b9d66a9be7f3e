"""The web UI: the SvelteKit build in mlx_manager/web served at / (static files, index.html for client routes).

Mounted after every router, so it only sees paths no route took; the API prefixes stay 404 in their own error
shape. SvelteKit's index.html boots with one inline script: its response carries the security headers' CSP with
that script's sha256 added (the middleware keeps a CSP a response already has)."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from mlx_manager.api.security_headers import HTML_CSP

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# Never answered by the UI: an unknown path under these is the API's own 404.
RESERVED = ("/v1", "/api", "/admin", "/anthropic", "/metrics", "/health", "/docs", "/redoc", "/openapi.json", "/rerank")
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)

MISSING_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MLX Manager</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>MLX Manager</h1>
<p>The server is running, but its web UI has not been built.</p>
<p>Build it with Node.js 20+: <code>cd ui &amp;&amp; npm ci &amp;&amp; npm run build</code>
(or run <code>bash scripts/install.sh</code>), then reload this page.</p>
<p>The APIs work without it: <a href="/docs">/docs</a>, <a href="/health">/health</a>.</p>
</body></html>
"""


@lru_cache(maxsize=4)
def _csp_for(index: Path, mtime_ns: int) -> str:
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(index.read_bytes())
    ]
    return HTML_CSP.replace("script-src 'self'", " ".join(["script-src 'self'", *hashes]), 1)


def index_csp(index: Path) -> str:
    """The CSP for index.html: the security headers' one, plus the hash of each of its inline scripts."""
    return _csp_for(index, index.stat().st_mtime_ns)


class WebUI:
    """An ASGI app for GET/HEAD of the UI's files and client routes."""

    def __init__(self, root: Path = WEB_DIR) -> None:
        self.root = root.resolve()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.serves(scope["method"], scope["path"]) or _sdk_listing_models(scope):
            # A mount matches every path, which hides the router's 405 for a path some route has with another
            # method: hand such a request to that route (it answers the 405), else it is the app's 404.
            router = getattr(scope.get("app"), "router", None)
            for route in getattr(router, "routes", []):
                if getattr(route, "app", None) is self:
                    continue
                match, child = route.matches(scope)
                if match == Match.PARTIAL:
                    await route.handle({**scope, **child}, receive, send)
                    return
            raise HTTPException(404)
        response = self.respond(scope["method"], scope["path"])
        await response(scope, receive, send)

    @staticmethod
    def serves(method: str, path: str) -> bool:
        reserved = any(path == p or path.startswith(p + "/") for p in RESERVED)
        return method in ("GET", "HEAD") and not reserved

    def respond(self, method: str, path: str) -> Response:
        if not self.serves(method, path):
            raise HTTPException(404)
        index = self.root / "index.html"
        if not index.is_file():
            return HTMLResponse(MISSING_HTML, headers={"Cache-Control": "no-store"})
        file = (self.root / path.lstrip("/")).resolve()
        if file.is_relative_to(self.root) and file.is_file() and file != index:
            immutable = "/_app/immutable/" in path
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            return FileResponse(file, headers={"Cache-Control": cache})
        if Path(path).suffix and not path.endswith(".html"):
            raise HTTPException(404)  # a missing asset, not a client route
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": index_csp(index)}
        return FileResponse(index, media_type="text/html", headers=headers)


def _sdk_listing_models(scope: Scope) -> bool:
    """GET /models from a client that takes no HTML: an OpenAI SDK whose base URL lacks /v1, which should get a 404
    saying so (errors.base_url_hint), not the UI's Models page (it fails to parse it)."""
    accept = dict(scope["headers"]).get(b"accept", b"").lower()
    return scope["path"].rstrip("/") == "/models" and b"text/html" not in accept
