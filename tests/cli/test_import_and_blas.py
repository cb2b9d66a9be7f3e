"""`mlx-manager import` makes a GGUF servable by name; the server picks its BLAS and says which."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import openai

from mlx_manager.manager.embedded import fetch_default_gguf
from mlx_manager.testing.server import run_server
from tests.cli.test_lifecycle import cli
from tests.conftest import asset_cache

OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")


def test_imported_gguf_is_listed_and_served_by_name(tmp_path: Path) -> None:
    gguf = fetch_default_gguf(asset_cache())
    out = cli(tmp_path, "import", str(gguf), "--name", "my-smol")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "models" / "my-smol" / "config.json").exists()
    listed = cli(tmp_path, "models")
    assert "my-smol" in listed.stdout and "chatml" in listed.stdout
    again = cli(tmp_path, "import", str(gguf), "--name", "my-smol")
    assert again.returncode != 0 and "exists" in (again.stderr + again.stdout)
    with run_server(tmp_path, []) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model="my-smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0
        )
        assert reply.usage is not None and reply.usage.completion_tokens >= 1


def test_importing_a_non_gguf_file_fails_clearly(tmp_path: Path) -> None:
    bogus = tmp_path / "x.gguf"
    bogus.write_bytes(b"not a gguf at all")
    out = cli(tmp_path, "import", str(bogus))
    assert out.returncode == 1
    assert "error:" in out.stderr and "Traceback" not in out.stderr


def _env_without_preload() -> dict[str, str]:
    return {"LD_PRELOAD": ""} if "LD_PRELOAD" in os.environ else {}


def test_server_preloads_system_openblas_by_itself(tmp_path: Path) -> None:
    if not OPENBLAS.exists():
        return
    with run_server(tmp_path, [], env=_env_without_preload()) as server:
        assert httpx.get(f"{server.base_url}/health").status_code == 200
        assert "BLAS: system OpenBLAS" in server.log()
        assert "idle threads sleep: OPENBLAS_THREAD_TIMEOUT=4" in server.log()


def test_server_started_with_openblas_preloaded_tells_its_idle_threads_to_sleep(tmp_path: Path) -> None:
    if not OPENBLAS.exists():
        return
    with run_server(tmp_path, [], env={"LD_PRELOAD": str(OPENBLAS), "OPENBLAS_THREAD_TIMEOUT": ""}) as server:
        assert f"BLAS: system OpenBLAS ({OPENBLAS}; idle threads sleep: OPENBLAS_THREAD_TIMEOUT=4)" in server.log()


def test_openblas_can_be_turned_off(tmp_path: Path) -> None:
    with run_server(tmp_path, ["--no-openblas"], env=_env_without_preload()) as server:
        assert "BLAS: mlx's bundled reference BLAS" in server.log()
