"""cpu_dtype through a real server: the admin model list says how the weights run, `--cpu-dtype` reaches the pool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from mlx_manager.engine.cpu_dtype import on_cpu
from mlx_manager.testing.server import ServerProcess, run_server

pytestmark = pytest.mark.skipif(not on_cpu(), reason="weights are converted only on MLX's CPU backend")

MODEL = "tiny-llama-4bit"
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def keep_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--model-dir", str(tiny_models_dir), "--cpu-dtype", "keep"]
    with run_server(tmp_path_factory.mktemp("keep"), args) as srv:
        yield srv


def _listed(server: ServerProcess, model: str) -> dict[str, object]:
    models = httpx.get(f"{server.base_url}/admin/models").json()["data"]
    return next(m for m in models if m["id"] == model)


def _chat(server: ServerProcess) -> str:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
    out = client.chat.completions.create(model=MODEL, messages=MSG, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    return out.choices[0].message.content or ""


def test_default_server_runs_a_4bit_model_in_float32_and_says_so(server: ServerProcess) -> None:
    text = _chat(server)
    listed = _listed(server, MODEL)
    assert (listed["dtype"], listed["quantization_bits"], listed["converted_from"]) == ("float32", None, "4-bit")
    assert f"Running {MODEL} in float32 on CPU (was 4-bit" in server.log()
    assert text


def test_keep_option_serves_the_4bit_weights_and_the_same_greedy_text(
    keep_server: ServerProcess, server: ServerProcess
) -> None:
    assert _chat(keep_server) == _chat(server)
    listed = _listed(keep_server, MODEL)
    assert (listed["quantization_bits"], listed["converted_from"]) == (4, None)
    assert "in float32 on CPU" not in keep_server.log()
