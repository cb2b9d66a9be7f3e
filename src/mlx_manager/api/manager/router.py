"""All the manager's routes under /api, and their errors declared as application/problem+json in the OpenAPI."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from mlx_manager.api.errors import PROBLEM_JSON
from mlx_manager.api.manager import audit, chats, keys, profiles, routing, settings, users
from mlx_manager.api.ollama.errors import OPENAPI_ERROR, is_ollama_path

router = APIRouter(prefix="/api")
router.include_router(users.auth_router)
router.include_router(users.users_router)
router.include_router(keys.router)
router.include_router(audit.router)
router.include_router(profiles.router)
router.include_router(settings.router)
router.include_router(routing.router)
router.include_router(chats.router)


def problem_openapi(app: FastAPI) -> None:
    """Errors of /api routes are problem documents: say so in the schema (FastAPI lists them as JSON, and adds a
    422 no route ever sends: validation errors are 400)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
            for path, item in schema.get("paths", {}).items():
                if is_ollama_path(path):  # Ollama's routes under /api answer {"error": ...}
                    for operation in item.values():
                        if operation.get("responses", {}).pop("422", None) is not None:
                            operation["responses"]["400"] = OPENAPI_ERROR
                    continue
                if not path.startswith("/api/"):
                    continue
                for operation in item.values():
                    responses = operation.get("responses", {})
                    if responses.pop("422", None) is not None and "400" not in responses:
                        responses["400"] = {
                            "description": "A problem (RFC 7807).",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
                        }
                    for status, response in responses.items():
                        content = response.get("content", {})
                        if status[0] in "45" and "application/json" in content:
                            content[PROBLEM_JSON] = content.pop("application/json")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
