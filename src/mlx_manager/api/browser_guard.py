"""What a web page in the user's browser could otherwise make this server do (there is no auth in open mode):

- Host allow-list: a page on evil.example that DNS-rebinds its name to 127.0.0.1 sends `Host: evil.example`, so
  only loopback names, the bound address (a wildcard bind: this machine's names and addresses) and
  `allowed_hosts` are served (400 otherwise; `*` turns the check off). `/health` answers any host.
- Origin check: a state-changing request (POST, PUT, PATCH, DELETE) that a browser marks as coming from another
  site (its `Origin`, else its `Referer`) is a 403 unless that origin is in `cors_origins`. Requests without
  either (SDKs, curl) are not browsers' and pass.
- Body types: the routes take JSON; a body sent as a form or as text/plain (the types a page may send anywhere
  without a CORS preflight) or any other non-JSON type is a 415. `BODY_TYPES` lists the routes that take more
  (the Files API's multipart uploads). Ollama's own docs send JSON with plain `curl -d` (a form type), so on its
  routes a form-typed body from a client that is no browser (no Origin, no Referer) is read as the JSON it is.

Errors come in each API's own shape (errors.error_response).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import psutil
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mlx_manager.api.errors import APIError, error_response
from mlx_manager.api.ollama.errors import is_ollama_path

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = ("/health",)
JSON_TYPES = frozenset({"application/json"})
CURL_FORM = "application/x-www-form-urlencoded"  # what `curl -d` labels any body with
# Path prefix -> further media types its routes take besides JSON (e.g. "/v1/audio/": multipart/form-data).
BODY_TYPES: dict[str, frozenset[str]] = {
    "/v1/files": frozenset({"multipart/form-data"}),  # OpenAI file uploads
    "/v1/audio/transcriptions": frozenset({"multipart/form-data"}),
    "/v1/audio/translations": frozenset({"multipart/form-data"}),
}


def split_host(value: str) -> tuple[str, int | None]:
    """`Host`-style `name[:port]` (IPv6 in brackets) as a lower-case name and a port."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""
    return name.rstrip("."), int(port) if port.isdigit() else None


def machine_names() -> set[str]:
    """This machine's host names and interface addresses: what clients may call a server bound to all of them."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for addresses in psutil.net_if_addrs().values():
        names.update(
            a.address.split("%")[0].lower() for a in addresses if a.family in (socket.AF_INET, socket.AF_INET6)
        )
    return names


def default_hosts(bind: str) -> set[str]:
    """Loopback names, the bound address, and for a wildcard bind every name and address of this machine."""
    names = set(LOOPBACK_NAMES)
    address = bind.strip().strip("[]").lower()
    return names | machine_names() if address in WILDCARDS else names | {address}


class BrowserGuardMiddleware:
    def __init__(self, app: ASGIApp, bind: str, allowed_hosts: Iterable[str], cors_origins: Iterable[str]) -> None:
        self.app = app
        configured = [h.strip().lower() for h in allowed_hosts if h.strip()]
        self.any_host = "*" in configured
        self.hosts = default_hosts(bind) | {split_host(h)[0] for h in configured if h != "*"}
        self.origins = {o.strip().rstrip("/").lower() for o in cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        scope = _curl_json_on_ollama(scope)
        problem = self._problem(scope)
        if problem is not None:
            await error_response(Request(scope), problem)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _problem(self, scope: Scope) -> APIError | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if host and not self.any_host and split_host(host)[0] not in self.hosts:
            return APIError(
                400,
                f"The Host header '{host[:100]}' is not one this server answers to; add it to allowed_hosts if it"
                " is yours.",
                code="invalid_host",
            )
        if scope["method"] not in STATE_CHANGING:
            return None
        origin = _origin_of(headers)
        if origin is not None and origin not in self.origins and not _same_origin(origin, host):
            return APIError(
                403,
                f"Cross-site request from {origin[:100]} refused; add the origin to cors_origins if it is yours.",
                type="permission_error",
                code="cross_site_request",
            )
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media and not _takes(scope["path"], media):
            return APIError(
                415,
                f"This route takes a JSON body (Content-Type: application/json), not {media[:100]}.",
                code="unsupported_media_type",
            )
        return None


def _curl_json_on_ollama(scope: Scope) -> Scope:
    """On Ollama's routes, a non-browser request's `curl -d` form type relabelled as JSON (its docs' examples)."""
    if scope["method"] not in STATE_CHANGING or not is_ollama_path(scope["path"]):
        return scope
    names = {k.lower() for k, _ in scope["headers"]}
    if b"origin" in names or b"referer" in names:
        return scope
    headers = [
        (k, b"application/json")
        if k.lower() == b"content-type" and v.split(b";")[0].strip().lower() == CURL_FORM.encode()
        else (k, v)
        for k, v in scope["headers"]
    ]
    return {**scope, "headers": headers}


def _origin_of(headers: dict[str, str]) -> str | None:
    """The requesting page's origin as a browser states it: `Origin`, else the `Referer`'s scheme and host."""
    origin = headers.get("origin")
    if origin:
        return origin.strip().rstrip("/").lower()
    referer = headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else "null"
    return None


def _same_origin(origin: str, host: str) -> bool:
    """The page came from this very server (the UI): its origin's host and port are the request's Host."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or not host:
        return False
    default = 443 if parts.scheme == "https" else 80
    name, port = split_host(parts.netloc)
    host_name, host_port = split_host(host)
    return name == host_name and (port or default) == (host_port or default)


def _takes(path: str, media: str) -> bool:
    if media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return True
    return any(path.startswith(prefix) and media in types for prefix, types in BODY_TYPES.items())
