"""Background server lifecycle, systemctl-style: PID file, run file, log file, health wait."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil

from mlx_manager import paths, status_token


@dataclass
class RunInfo:
    pid: int
    host: str
    port: int
    started_at: float
    # The serve arguments, without any API key, so `restart` brings back the same server.
    args: list[str] = field(default_factory=list)
    key_required: bool = False
    # The kernel's start time of `pid` (psutil create_time): a recycled pid has another, so it is never taken
    # for this server (an unrelated process with "mlx-manager" in its arguments was, and `stop` killed it).
    process_started: float = 0.0

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


def write_run_info(info: RunInfo) -> None:
    if not info.process_started:
        info.process_started = psutil.Process(info.pid).create_time()
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    paths.pid_file().write_text(f"{info.pid}\n")
    paths.run_file().write_text(json.dumps(info.__dict__))


def clear_run_info(pid: int) -> None:
    """Remove the PID/run files, but only if they still describe this pid."""
    current = read_run_info()
    if current is None or current.pid == pid:
        for path in (paths.pid_file(), paths.run_file()):
            path.unlink(missing_ok=True)


def read_run_info() -> RunInfo | None:
    try:
        pid = int(paths.pid_file().read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        data = json.loads(paths.run_file().read_text())
        return RunInfo(
            pid=pid,
            host=data["host"],
            port=int(data["port"]),
            started_at=float(data["started_at"]),
            args=[str(a) for a in data.get("args", [])],
            key_required=bool(data.get("key_required", False)),
            process_started=float(data.get("process_started", 0.0)),
        )
    except (OSError, ValueError, KeyError):
        return RunInfo(pid=pid, host="127.0.0.1", port=0, started_at=0.0)


def is_our_process(info: RunInfo) -> bool:
    """True when the run file's pid is alive and is the process that wrote it: same kernel start time (a pid
    recycled since, or a run file without the start time, is not ours)."""
    try:
        proc = psutil.Process(info.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return info.process_started > 0 and abs(proc.create_time() - info.process_started) < 0.5
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def running() -> RunInfo | None:
    info = read_run_info()
    if info is None:
        return None
    if not is_our_process(info):
        clear_run_info(info.pid)  # stale PID file from a crash
        return None
    return info


def clear_on_sigterm(pid: int) -> None:
    """Remove the run files when SIGTERM ends the server: uvicorn re-raises the signal after its shutdown, with
    the handler found at start, so without this one the default kills the process before any `finally` runs."""

    def end(sig: int, _frame: FrameType | None) -> None:
        clear_run_info(pid)
        signal.signal(sig, signal.SIG_DFL)  # then die of the signal, as the caller expects
        signal.raise_signal(sig)

    signal.signal(signal.SIGTERM, end)


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def log_file() -> Path:
    """The server's own log (rotated by the server)."""
    return paths.logs_dir() / "server.log"


def console_file() -> Path:
    """A background server's stdout and stderr: its log lines too, and anything printed before logging starts."""
    return paths.logs_dir() / "console.log"


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def health(base_url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{base_url}/health", timeout=timeout)
        return dict(response.json()) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


class StartError(RuntimeError):
    pass


def split_api_key(args: list[str]) -> tuple[list[str], str | None]:
    """Remove `--api-key KEY` from arguments: a key on a command line is visible to every local user."""
    out: list[str] = []
    key = None
    it = iter(args)
    for arg in it:
        if arg == "--api-key":
            key = next(it, None)
        elif arg.startswith("--api-key="):
            key = arg.split("=", 1)[1]
        else:
            out.append(arg)
    return out, key


def start_background(
    serve_args: list[str], host: str, port: int, timeout: float, api_key: str | None = None
) -> RunInfo:
    """Spawn `mlx-manager serve` detached (any API key goes through the environment), return once /health answers."""
    log = console_file()
    log.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        out.write(f"\n--- start {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlx_manager", "serve", *serve_args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "MLX_MANAGER_API_KEY": api_key} if api_key else None,
        )
    info = RunInfo(pid=proc.pid, host=host, port=port, started_at=time.time())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise StartError(f"The server exited with code {code} during start-up. Last log lines:\n{tail(log)}")
        if health(info.base_url, timeout=1.0) is not None:
            return info
        time.sleep(0.2)
    proc.terminate()
    raise StartError(f"The server did not answer /health within {timeout:.0f}s. Last log lines:\n{tail(log)}")


def stop_process(pid: int, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True when it had to be killed."""
    try:
        proc = psutil.Process(pid)
        os.kill(pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
        return False
    except (psutil.NoSuchProcess, ProcessLookupError):
        return False
    except psutil.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
            psutil.Process(pid).wait(timeout=10)
        return True
    finally:
        clear_run_info(pid)


def loaded_models(info: RunInfo, api_key: str | None) -> list[str]:
    """The server's status token when this user can read it (it works with accounts too), else the API key."""
    token = status_token.read(info.port) or api_key
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{info.base_url}/admin/models", headers=headers, timeout=5)
        return [m["id"] for m in response.json().get("data", [])] if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return []
