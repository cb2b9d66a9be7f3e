"""Peer servers (mlx-lm's, vllm-mlx) and ours as subprocesses for the benchmark scripts: each peer in its own
virtualenv under .cache/bench-venvs (created on first use, never the project's), started, restarted, stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from mlx_manager.testing.server import ServerProcess, free_port, server_env, wait_until_ready

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / ".cache" / "bench-venvs"
OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"

PEER_INSTALL = {
    "mlx-lm": [["mlx[cpu]", "mlx-lm"]],
    # torch first, so vllm-mlx's torch requirement takes the local CPU build instead of CUDA wheels.
    "vllm-mlx": [["torch==2.13.0"], ["vllm-mlx==0.6.*", "mlx[cpu]"]],
}


def blas_env() -> dict[str, str]:
    env = dict(os.environ)
    if Path(OPENBLAS).exists():
        env["LD_PRELOAD"] = OPENBLAS
    env["HF_HUB_OFFLINE"] = "1"
    return env


def ensure_venv(name: str) -> Path:
    venv = VENVS / name
    marker = venv / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for group in PEER_INSTALL[name]:
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *group], check=True)
        marker.write_text("ok")
    return venv


def peer_command(name: str, model: Path, port: int, extra: list[str] | None = None) -> list[str]:
    venv = ensure_venv(name)
    if name == "mlx-lm":
        cmd = [str(venv / "bin" / "python"), "-m", "mlx_lm", "server", "--model", str(model), "--port", str(port)]
    else:
        cmd = [str(venv / "bin" / "vllm-mlx"), "serve", str(model), "--port", str(port), "--continuous-batching"]
    return cmd + (extra or [])


def ours_command(model: Path, port: int, extra: list[str] | None = None) -> list[str]:
    serve = [sys.executable, "-m", "mlx_manager", "serve", "--port", str(port), "--model-dir", str(model.parent)]
    return serve + (extra or [])


class Managed:
    """A server command that can be started, stopped and started again; each start takes a fresh port."""

    def __init__(self, command: Callable[[int], list[str]], log: Path, env: dict[str, str]) -> None:
        self.command, self.log, self.env = command, log, env
        self.server: ServerProcess | None = None

    def start(self, timeout: float = 300) -> str:
        port = free_port()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            proc = subprocess.Popen(self.command(port), stdout=out, stderr=subprocess.STDOUT, env=self.env)
        self.server = ServerProcess(proc, port, self.log)
        try:
            wait_until_ready(self.server, "/v1/models", timeout=timeout, interval=0.5)
        except RuntimeError:
            self.stop()
            raise
        return self.server.base_url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(30)
            self.server = None

    def restart(self) -> str:
        self.stop()
        return self.start()


def ours(model: Path, home: Path, log: Path, extra: list[str] | None = None, source: Path | None = None) -> Managed:
    """Our server over the model's folder; a restart keeps `home` (state, settings, any disk cache).
    `source`: a src/ folder to import mlx_manager from instead (e.g. a commit's snapshot)."""
    env = server_env(home, blas_env())
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return Managed(lambda port: ours_command(model, port, extra), log, env)


def peer(name: str, model: Path, log: Path, extra: list[str] | None = None) -> Managed:
    ensure_venv(name)
    return Managed(lambda port: peer_command(name, model, port, extra), log, blas_env())


@contextmanager
def running(cmd: list[str], port: int, log: Path, env: dict[str, str]) -> Iterator[str]:
    """Any OpenAI-compatible server command; yields its base URL once /v1/models answers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        server = ServerProcess(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env), port, log)
    try:
        wait_until_ready(server, "/v1/models", timeout=300, interval=0.5)
        yield server.base_url
    finally:
        server.stop(30)


def served_model_id(base: str, fallback: str) -> str:
    """The id the server lists, else the model path (mlx-lm's server answers /v1/models with an empty body)."""
    try:
        ids = [m["id"] for m in httpx.get(f"{base}/v1/models", timeout=10).json().get("data", [])]
    except ValueError:
        return fallback
    return fallback if fallback in ids or not ids else ids[0]
