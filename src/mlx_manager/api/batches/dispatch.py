"""One batch line through the same servings the routes use (api/request), at the background priority; the reply
or the error comes back in the endpoint's own shape with the status the route would have answered."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from mlx_manager.api.errors import APIError, error_body, from_engine_error
from mlx_manager.api.openai.embedding_schemas import EmbeddingRequest
from mlx_manager.api.openai.embedding_serving import create_embeddings
from mlx_manager.api.openai.schemas import ChatCompletionRequest, CompletionRequest
from mlx_manager.api.openai.serving import OpenAIServing
from mlx_manager.api.request import limits
from mlx_manager.api.request.start import BACKGROUND_PRIORITY, PRIORITY_FLOOR
from mlx_manager.api.responses.schemas import ResponsesRequest
from mlx_manager.api.responses.serving import Caller, ResponsesServing
from mlx_manager.engine.errors import EngineError

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")


async def _never() -> bool:
    return False


def dispatcher(app: FastAPI) -> Any:
    """The runner's Dispatch for this app (api/batches/runner.py)."""

    async def dispatch(endpoint: str, body: dict[str, Any], owner: str | None) -> tuple[int, dict[str, Any]]:
        token = PRIORITY_FLOOR.set(BACKGROUND_PRIORITY)
        try:
            reply = await _run(app, endpoint, {**body, "stream": False} if endpoint != ENDPOINTS[2] else body, owner)
            return 200, reply.model_dump(mode="json", exclude_none=endpoint != ENDPOINTS[3])
        except ValidationError as exc:
            errors = exc.errors()
            param = ".".join(str(p) for p in errors[0]["loc"]) or None if errors else None
            message = f"Invalid value for '{param}': {errors[0]['msg']}" if param else "Invalid request body."
            return 400, error_body(message, "invalid_request_error", param)
        except EngineError as exc:
            return _error(from_engine_error(exc))
        except APIError as exc:
            return _error(exc)
        except Exception as exc:  # one bad line must not stop the batch; the details go to the log
            return 500, error_body(f"The request failed: {type(exc).__name__}", "server_error")
        finally:
            PRIORITY_FLOOR.reset(token)

    return dispatch


def _error(exc: APIError) -> tuple[int, dict[str, Any]]:
    return exc.status, error_body(exc.message, exc.type, exc.param, exc.code)


async def _run(app: FastAPI, endpoint: str, body: dict[str, Any], owner: str | None) -> BaseModel:
    openai: OpenAIServing = app.state.openai_serving
    if endpoint == "/v1/chat/completions":
        chat = ChatCompletionRequest.model_validate(body)
        return await openai.chat(chat, await openai.start_chat(chat), _never)
    if endpoint == "/v1/completions":
        text = CompletionRequest.model_validate(body)
        return await openai.completion(text, await openai.start_completion(text), _never)
    if endpoint == "/v1/embeddings":
        embed = EmbeddingRequest.model_validate(body)
        starter = openai.starter
        work = create_embeddings(app.state.engine, embed, app.state.router)
        return await limits.within(work, "embeddings", starter.time_limits(), starter.on_limit)
    responses: ResponsesServing = app.state.responses_serving
    req = ResponsesRequest.model_validate(body)
    return await responses.respond(req, await responses.start(req, Caller(owner)), _never)
