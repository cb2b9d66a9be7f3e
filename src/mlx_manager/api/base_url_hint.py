"""A 404 for a path an SDK built from a base URL pasted without /v1 (OpenAI's SDKs) or with it (Anthropic's SDK
adds /v1 itself) says which base URL to set, instead of a bare "Not Found"."""

from __future__ import annotations

from starlette.requests import Request

# What OpenAI's SDKs append to their base URL (first path segments), served here under /v1.
OPENAI_ROOTS = frozenset({"chat", "completions", "embeddings", "models", "responses", "audio", "files", "batches"})


def base_url_hint(request: Request) -> str | None:
    path = request.url.path
    root = f"{request.url.scheme}://{request.url.netloc}"
    if path.startswith("/v1/v1/"):
        return (
            f"Not Found: {path} has /v1 twice. The Anthropic SDK adds /v1 itself: set its base URL to {root}. "
            f"OpenAI SDKs take {root}/v1."
        )
    if is_messages_miss(path):
        return f"Not Found: Anthropic's Messages API is at /v1{path}. Set the Anthropic SDK's base URL to {root}."
    if path.strip("/").split("/")[0] in OPENAI_ROOTS:
        return f"Not Found: the OpenAI-compatible API is at /v1{path}. Set the client's base URL to {root}/v1."
    return None


def is_messages_miss(path: str) -> bool:
    """A Messages API path at the wrong place: errors.error_response answers it in Anthropic's shape, as its SDK
    expects."""
    tail = path.removeprefix("/v1")
    return tail == "/messages" or tail.startswith("/messages/") or path.startswith("/v1/v1/messages")
