"""`mlx-manager start → status → stop` with the PID file, like systemctl."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from mlx_manager.testing.server import free_port, server_env


def cli(home: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlx_manager", *args],
        env=server_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_start_status_stop_round_trip(tmp_path: Path, tiny_models_dir: Path) -> None:
    port = free_port()
    started = cli(
        tmp_path, "start", "--port", str(port), "--model-dir", str(tiny_models_dir), "--preload", "tiny-llama"
    )
    assert started.returncode == 0, started.stderr + started.stdout
    pid = int((tmp_path / "state" / "server.pid").read_text())
    assert psutil.pid_exists(pid)
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200

    status = cli(tmp_path, "status")
    assert status.returncode == 0
    assert f"pid {pid}" in status.stdout
    assert f"127.0.0.1:{port}" in status.stdout
    assert "health:  ok" in status.stdout
    assert "tiny-llama" in status.stdout

    again = cli(tmp_path, "start", "--port", str(port))
    assert again.returncode == 0 and "already running" in again.stdout

    restarted = cli(tmp_path, "restart")
    assert restarted.returncode == 0, restarted.stderr
    new_pid = int((tmp_path / "state" / "server.pid").read_text())
    assert new_pid != pid and _gone(pid)
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    # The same serve arguments came back: the model dir is scanned and the preload is loaded again.
    assert "tiny-llama" in cli(tmp_path, "status").stdout
    pid = new_pid

    stopped = cli(tmp_path, "stop")
    assert stopped.returncode == 0 and f"stopped (pid {pid})" in stopped.stdout
    assert not (tmp_path / "state" / "server.pid").exists()
    assert _gone(pid)

    after = cli(tmp_path, "status")
    assert after.returncode == 3 and "not running" in after.stdout
    assert "logs" in started.stdout and (tmp_path / "state" / "logs" / "server.log").exists()


def test_failed_start_shows_the_log_tail(tmp_path: Path) -> None:
    # A preload of a model that does not exist makes start-up fail.
    out = cli(tmp_path, "start", "--port", str(free_port()), "--preload", "missing-model", "--timeout", "30")
    assert out.returncode == 1
    assert "missing-model" in out.stderr
    assert not (tmp_path / "state" / "server.pid").exists()


def test_stale_pid_file_is_treated_as_not_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(parents=True)
    (state / "server.pid").write_text("999999\n")
    out = cli(tmp_path, "status")
    assert out.returncode == 3
    assert not (state / "server.pid").exists()


def test_port_in_use_says_which_port_and_how_to_fix(tmp_path: Path, tiny_models_dir: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = cli(tmp_path, "serve", "--port", str(port), "--model-dir", str(tiny_models_dir))
    assert out.returncode == 1
    assert f"port {port}" in out.stderr and "--port" in out.stderr


def test_non_loopback_bind_without_key_is_refused(tmp_path: Path) -> None:
    out = cli(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert out.returncode == 1
    assert "API key" in out.stderr and "--allow-unauthenticated-remote" in out.stderr


def test_models_command_lists_local_models_with_family_and_size(tmp_path: Path, tiny_models_dir: Path) -> None:
    out = cli(tmp_path, "models", "--model-dir", str(tiny_models_dir))
    assert out.returncode == 0
    for name in ("tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-gemma3", "tiny-llama-4bit"):
        assert name in out.stdout
    assert "llama3" in out.stdout and "MB" in out.stdout


def test_api_key_never_appears_on_a_command_line_and_restart_needs_it_again(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    port = free_port()
    started = cli(tmp_path, "start", "--port", str(port), "--model-dir", str(tiny_models_dir), "--api-key", "s3cret")
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / "state" / "server.pid").read_text())
    try:
        assert not any("s3cret" in part for part in psutil.Process(pid).cmdline())
        assert "s3cret" not in (tmp_path / "state" / "server.json").read_text()
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        refused = cli(tmp_path, "restart")
        assert refused.returncode == 1 and "MLX_MANAGER_API_KEY" in refused.stderr
    finally:
        cli(tmp_path, "stop")


def test_empty_api_key_does_not_count_as_a_key_for_remote_binds(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**server_env(tmp_path), "MLX_MANAGER_API_KEY": ""}
    out = subprocess.run(
        [sys.executable, "-m", "mlx_manager", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "API key" in out.stderr
