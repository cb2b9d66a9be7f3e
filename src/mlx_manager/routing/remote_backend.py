"""A remote OpenAI- or Anthropic-compatible server as a Backend (engine/backend.py): chat generations, one
sequence at a time, and token counts where its protocol has them (Anthropic's count_tokens)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import httpx

from mlx_manager.engine.backend import ONE, Capabilities, Run
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import ChatPrompt, Prompt, SamplingParams
from mlx_manager.routing.anthropic_client import count_tokens as count_message_tokens
from mlx_manager.routing.anthropic_client import open_messages
from mlx_manager.routing.openai_client import open_chat
from mlx_manager.routing.remote import RemoteError

RemoteKind = Literal["openai", "anthropic"]
# How each protocol is named where the router says why a backend was passed over.
PROTOCOL_NAMES: dict[str, str] = {"openai": "OpenAI-compatible", "anthropic": "Anthropic-compatible"}


class RemoteBackend:
    def __init__(
        self, name: str, kind: RemoteKind, client: Callable[[], httpx.AsyncClient], api_key: str | None
    ) -> None:
        """`client`: the router's pooled client for this backend; a base URL it cannot use raises RemoteError."""
        self.name = name
        self.kind = kind
        self.client = client
        self.api_key = api_key

    async def generate(self, model_id: str, prompt: Prompt, params: SamplingParams, run: Run = ONE) -> Generation:
        """One chat sequence; the remote server keeps its own KV and queue (run.kv and run.priority stay here)."""
        if not isinstance(prompt, ChatPrompt) or run.n != 1:
            raise RemoteError(self.name, 400, "remote backends serve chat requests with n=1 only")
        opener = open_chat if self.kind == "openai" else open_messages
        return await opener(self.client(), self.name, prompt, params, model_id, self.api_key)

    async def count_tokens(self, model_id: str, prompt: Prompt) -> int:
        if self.kind != "anthropic" or not isinstance(prompt, ChatPrompt):
            raise RemoteError(self.name, 400, f"{PROTOCOL_NAMES[self.kind]}, no token count")
        return await count_message_tokens(self.client(), self.name, prompt, model_id, self.api_key)

    async def capabilities(self, model_id: str) -> Capabilities:
        # What the model takes is the remote server's to say: images go as sent, context is not known here.
        return Capabilities(where=self.name, task=None, images=None, count_tokens=self.kind == "anthropic")
