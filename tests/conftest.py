"""Shared fixtures: tiny models written once per cache, and a real server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_models import write_tiny_models

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def asset_cache() -> Path:
    return Path(os.environ.get("MLX_MANAGER_TEST_CACHE", REPO / ".cache" / "test-assets"))


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """tiny-llama, tiny-qwen3, tiny-mistral, tiny-gemma3, tiny-llama-4bit (names -> folders)."""
    return {p.name: p for p in write_tiny_models(asset_cache() / "tiny-models").values()}


@pytest.fixture(scope="session")
def tiny_models_dir(tiny_models: dict[str, Path]) -> Path:
    return next(iter(tiny_models.values())).parent


@pytest.fixture(scope="session")
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One shared server over the tiny models, default settings."""
    with run_server(tmp_path_factory.mktemp("home"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def token_id(model_dir: Path, token: str) -> int:
    from tokenizers import Tokenizer

    tid = Tokenizer.from_file(str(model_dir / "tokenizer.json")).token_to_id(token)
    assert tid is not None, f"{token} not in {model_dir.name}'s vocabulary"
    return int(tid)
