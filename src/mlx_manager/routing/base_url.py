"""A backend's base URL as users paste it, to the one form the clients append their paths to.

OpenAI-compatible: the SDK's base_url, which holds the API version (`http://host:8000/v1`); a bare host gets
`/v1`, any other path is kept (`.../v1beta/openai`), and the client appends `/chat/completions`.
Anthropic-compatible: the SDK's base_url, without a version (`https://api.anthropic.com`); a pasted `/v1` is
dropped, and the client appends `/v1/messages`.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def normalize_base_url(kind: str, url: str) -> str:
    """The same URL for every way of writing it; idempotent, so stored and used URLs may both go through it."""
    scheme, netloc, path, query, fragment = urlsplit(url.strip())
    path = path.rstrip("/")
    if kind == "openai" and not path:
        path = "/v1"
    elif kind == "anthropic" and path.endswith("/v1"):
        path = path.removesuffix("/v1")
    return urlunsplit((scheme, netloc, path, query, fragment))
