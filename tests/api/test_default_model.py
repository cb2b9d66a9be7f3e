"""The embedded default model (SmolLM2-135M-Instruct from its GGUF) answers real questions over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from mlx_manager.engine.cpu_dtype import on_cpu
from mlx_manager.manager.embedded import DEFAULT_GGUF_FILENAME, DEFAULT_MODEL_NAME, fetch_default_gguf
from mlx_manager.sse import iter_json
from mlx_manager.testing.server import ServerProcess, run_server, server_env
from tests.conftest import asset_cache

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("default-home")
    (home / "cache").mkdir()
    # `setup` finds the GGUF already fetched in its cache, so no download happens here.
    (home / "cache" / DEFAULT_GGUF_FILENAME).symlink_to(fetch_default_gguf(asset_cache()))
    setup = subprocess.run(
        [sys.executable, "-m", "mlx_manager", "setup"], env=server_env(home), capture_output=True, text=True
    )
    assert setup.returncode == 0, setup.stderr
    assert (home / "models" / DEFAULT_MODEL_NAME / "config.json").exists()
    with run_server(home, []) as srv:
        yield srv


def test_default_model_is_listed(default_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{default_server.base_url}/v1", api_key="x", max_retries=0)
    assert DEFAULT_MODEL_NAME in {m.id for m in client.models.list()}


def test_default_model_answers_paris(default_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{default_server.base_url}/v1", api_key="x", max_retries=0, timeout=120)
    out = client.chat.completions.create(model=DEFAULT_MODEL_NAME, messages=QUESTION, max_tokens=24, temperature=0)  # type: ignore[arg-type]
    assert "Paris" in (out.choices[0].message.content or "")
    assert out.choices[0].finish_reason in ("stop", "length")


def test_default_model_streams_paris_to_a_plain_http_client(default_server: ServerProcess) -> None:
    body = {"model": DEFAULT_MODEL_NAME, "messages": QUESTION, "max_tokens": 24, "temperature": 0, "stream": True}
    text = ""
    with httpx.stream("POST", f"{default_server.base_url}/v1/chat/completions", json=body, timeout=120) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        for choice in json.loads(line[6:])["choices"]:
            text += choice["delta"].get("content") or ""
    assert "Paris" in text


def test_chatml_end_of_turn_stops_the_default_model(default_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{default_server.base_url}/v1", api_key="x", max_retries=0, timeout=120)
    out = client.chat.completions.create(model=DEFAULT_MODEL_NAME, messages=QUESTION, max_tokens=200, temperature=0)  # type: ignore[arg-type]
    assert out.choices[0].finish_reason == "stop"
    assert "<|im_end|>" not in (out.choices[0].message.content or "")
    assert out.usage is not None and out.usage.completion_tokens < 200


def test_server_log_reports_openblas_on_linux(default_server: ServerProcess) -> None:
    if not Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0").exists():
        pytest.skip("system OpenBLAS not installed")
    assert "BLAS: system OpenBLAS" in default_server.log()


# --- the README's first example, as a new user sends it (no temperature: the model's defaults apply) -----------

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_curl_body() -> dict[str, object]:
    text = README.read_text()
    start = text.index("curl -N http://127.0.0.1:8080/v1/chat/completions")
    body = text[text.index("-d '", start) + 4 : text.index("}'", start) + 1]
    return dict(json.loads(body))


def _readme_python_example(base_url: str) -> str:
    text = README.read_text()
    start = text.index("```python\nfrom openai import OpenAI")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    assert 'base_url="http://127.0.0.1:8080/v1"' in code
    return code.replace("http://127.0.0.1:8080", base_url)


def test_readme_curl_example_answers_paris_every_time(default_server: ServerProcess) -> None:
    body = _readme_curl_body()
    assert "temperature" not in body and "seed" not in body  # sent as is: the model's own defaults decide
    for _ in range(5):
        text = ""
        with httpx.stream("POST", f"{default_server.base_url}/v1/chat/completions", json=body, timeout=120) as resp:
            assert resp.status_code == 200
            for _, chunk in iter_json(resp):
                for choice in chunk["choices"]:
                    text += choice["delta"].get("content") or ""
        assert "Paris" in text, text


def test_readme_python_example_prints_paris(default_server: ServerProcess) -> None:
    code = _readme_python_example(default_server.base_url)
    for _ in range(3):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr
        assert "Paris" in run.stdout, run.stdout


def test_default_model_lists_its_sampling_defaults_and_context(default_server: ServerProcess) -> None:
    card = httpx.get(f"{default_server.base_url}/v1/models/{DEFAULT_MODEL_NAME}", timeout=30).json()
    defaults = card["sampling_defaults"]
    assert defaults["temperature"] == {"value": 0.0, "source": "model"}
    assert defaults["top_p"] == {"value": 1.0, "source": "api"}
    assert defaults["top_k"] == {"value": 0, "source": "api"}
    assert card["context_length"] == card["max_model_len"] == 8192


def test_default_model_runs_in_float32_on_a_cpu_backend(default_server: ServerProcess) -> None:
    if not on_cpu():
        pytest.skip("on Metal/CUDA the 4-bit weights stay as stored")
    httpx.post(f"{default_server.base_url}/admin/models/{DEFAULT_MODEL_NAME}/load", timeout=120).raise_for_status()
    listed = httpx.get(f"{default_server.base_url}/admin/models").json()["data"]
    model = next(m for m in listed if m["id"] == DEFAULT_MODEL_NAME)
    assert (model["dtype"], model["quantization_bits"], model["converted_from"]) == ("float32", None, "4-bit")
    assert model["memory_bytes"] > 500e6  # 135M parameters in float32
