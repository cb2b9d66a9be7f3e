"""Ollama's error shape, {"error": "..."}, on its routes (which share the /api prefix with the manager's own)."""

from __future__ import annotations

from typing import Any

# The routes that answer in Ollama's shape; the rest of /api keeps RFC 7807 problem details.
PATHS = frozenset(
    "/api/" + name
    for name in (
        "chat", "generate", "embed", "embeddings", "tags", "show", "ps", "pull", "push", "delete", "copy",
        "create", "version",
    )
)  # fmt: skip
# The model listings, hidden from the audit log's view unless asked for (as /v1/models is).
LISTINGS = ("/api/tags", "/api/ps", "/api/version", "/api/show")


# How the OpenAPI document describes a 400 on these routes.
OPENAPI_ERROR: dict[str, Any] = {
    "description": 'Bad input, as Ollama answers it: {"error": "..."}.',
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
        }
    },
}


def is_ollama_path(path: str) -> bool:
    return path in PATHS or path.startswith("/api/blobs/")


def ollama_error_body(message: str) -> dict[str, Any]:
    return {"error": message}
